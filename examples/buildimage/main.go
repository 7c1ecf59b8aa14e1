// Command buildimage packs a Go program into a Docker image FROM scratch,
// the way the examples' tests do: it compiles the main package in DIR with
// CGO_ENABLED=0 for linux and builds the image through the Engine API from
// an in-memory build context (nothing is pulled). The binary lands at
// /NAME, NAME being DIR's base name, and the image has CMD ["/NAME"].
//
//	go run ./examples/buildimage offload-example/wordcount:1 ./examples/pipeline/wordcount
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/offload-project/offload/internal/testimage"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: buildimage TAG DIR")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := testimage.BuildImage(ctx, os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "buildimage:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %s\n", os.Args[1], bin)
}
