// Command sumrange is the workload of the subtasks example: it adds up the
// integers FROM..TO (inclusive) one by one, prints the sum and writes it to
// /outputs/sum.txt when /outputs exists. It is compiled for WASI
// (GOOS=wasip1 GOARCH=wasm) and runs under the provider's wazero runtime.
//
//	sumrange FROM TO
package main

import (
	"fmt"
	"os"
	"strconv"
)

func main() {
	// Under WASI, argv[0] is the runtime's program name; accept the
	// program's own name too, as `sumrange FROM TO`.
	args := os.Args[1:]
	if len(args) == 3 && args[0] == "sumrange" {
		args = args[1:]
	}
	if len(args) != 2 {
		fail("usage: sumrange FROM TO")
	}
	from, err1 := strconv.ParseInt(args[0], 10, 64)
	to, err2 := strconv.ParseInt(args[1], 10, 64)
	if err1 != nil || err2 != nil || from > to {
		fail(fmt.Sprintf("bad range %q..%q", args[0], args[1]))
	}
	var sum int64
	for i := from; i <= to; i++ {
		sum += i
	}
	fmt.Println(sum)
	if _, err := os.Stat("/outputs"); err == nil {
		if err := os.WriteFile("/outputs/sum.txt", []byte(strconv.FormatInt(sum, 10)+"\n"), 0o644); err != nil {
			fail(err.Error())
		}
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "sumrange:", msg)
	os.Exit(1)
}
