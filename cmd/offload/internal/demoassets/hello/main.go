// Command hello is the program `offload demo` runs as its task. It is
// compiled for wasip1/wasm and statically for linux/amd64 and linux/arm64 by
// the generator in the parent directory (`go generate`), and the results are
// embedded in the offload binary by package demoassets.
//
// Usage: hello [/hello] SUBCOMMAND [ARGS...]
//
//	echo ARGS...   print ARGS joined by a space and a newline
//
// It imports only package os, to stay small. Anything else it reports on
// stderr and exits with status 1.
package main

import (
	"os"
	"strings"
)

func main() {
	argv := os.Args[1:]
	// In the Docker image the program is /hello and a task's command starts
	// with it (`/hello echo hi`); under WASM the command is passed as is. The
	// program accepts its own path as a first argument either way.
	if len(argv) > 0 && argv[0] == "/hello" {
		argv = argv[1:]
	}
	if len(argv) < 1 {
		fail("usage: hello echo ARGS...")
	}
	switch argv[0] {
	case "echo":
		if _, err := os.Stdout.WriteString(strings.Join(argv[1:], " ") + "\n"); err != nil {
			fail(err.Error())
		}
	default:
		fail("unknown subcommand " + argv[0])
	}
}

func fail(msg string) {
	os.Stderr.WriteString("hello: " + msg + "\n")
	os.Exit(1)
}
