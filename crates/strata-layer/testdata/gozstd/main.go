// gozstd compresses stdin to stdout with klauspost/compress/zstd, the encoder skopeo,
// podman and buildah use for zstd layers, at the level given as its only argument
// (fastest, default, better, best). Tests build it with the machine's Go.
package main

import (
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

func main() {
	ok, level := zstd.EncoderLevelFromString(os.Args[1])
	if !ok {
		panic("unknown level " + os.Args[1])
	}
	w, err := zstd.NewWriter(os.Stdout, zstd.WithEncoderLevel(level))
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
