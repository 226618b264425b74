// gopgzip compresses stdin to stdout with klauspost/pgzip, the gzip writer of
// containers/image (skopeo, podman, buildah) and umoci, at the level given as the first
// argument (-1 = DefaultCompression) and, if a second is given, with blocks of that many
// bytes (pgzip's default is 1 MiB). Tests build it with the machine's Go.
package main

import (
	"io"
	"os"
	"runtime"
	"strconv"

	"github.com/klauspost/pgzip"
)

func main() {
	level, err := strconv.Atoi(os.Args[1])
	if err != nil {
		panic(err)
	}
	w, err := pgzip.NewWriterLevel(os.Stdout, level)
	if err != nil {
		panic(err)
	}
	if len(os.Args) > 2 {
		size, err := strconv.Atoi(os.Args[2])
		if err != nil {
			panic(err)
		}
		if err := w.SetConcurrency(size, runtime.GOMAXPROCS(0)); err != nil {
			panic(err)
		}
	}
	if _, err := io.Copy(w, os.Stdin); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
}
