module strata/testdata/gozstd

go 1.21

require github.com/klauspost/compress v1.17.11
