// gogzip compresses stdin to stdout with Go's standard library compress/gzip at the level
// given as its only argument (1 = BestSpeed, -1 = DefaultCompression). Tests build it with
// the machine's Go to produce the gzip streams Docker writes.
package main

import (
	"compress/gzip"
	"io"
	"os"
	"strconv"
)

func main() {
	level, err := strconv.Atoi(os.Args[1])
	if err != nil {
		panic(err)
	}
	w, err := gzip.NewWriterLevel(os.Stdout, level)
	if err != nil {
		panic(err)
	}
	if _, err := io.Copy(w, os.Stdin); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
}
