module gogzip

go 1.20
