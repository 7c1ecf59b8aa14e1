// Command hello is a tiny, dependency-free workload used by the executor
// tests. It is compiled statically for linux (and put into a FROM scratch
// Docker image by package testimage) and for wasip1 (run under wazero).
//
// Usage: hello SUBCOMMAND [ARGS...]
//
//	echo ARGS...          print ARGS joined by a space and a newline
//	exit N                exit with status N
//	sleep DUR             sleep for a Go duration (e.g. 30s)
//	env                   print the environment, one KEY=VALUE per line
//	pwd                   print the working directory
//	stderr MSG            print MSG to stderr
//	write PATH CONTENT    write CONTENT to PATH (e.g. /outputs/x.txt)
//	cat PATH              print the file at PATH
//	copy SRC DST          copy the file SRC to DST (a whole read, then a write)
//	ls PATH               list the directory PATH, one name per line
//	alloc MiB             allocate and touch MiB mebibytes, then print "ok"
//	spin DUR              busy-loop on one CPU for DUR
//	spam N                print N bytes of output ('x', newline every 64)
//	tick N DUR            print "tick I UNIXNANO" for I in 1..N, one every DUR
//	count N DUR DIR       count to N, one step every DUR, printing "count I" and keeping
//	                      the count in DIR/state (written atomically); resume from it
//	                      when present ("resumed at I"); end with "total N"
//	net                   (linux) report network interfaces and a loopback dial
//	whoami, caps          (linux) uid, CapEff and NoNewPrivs from /proc/self/status
//	fork N                (linux) start N child processes that sleep; report how many started
//	get URL               print the body of an HTTP GET of URL (3 s limit); exit 1 on any failure
//	serve PORT [BODY]     serve BODY (default "hello from offload") to every HTTP request on PORT
//
// Anything it cannot do it reports on stderr and exits with status 1.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	argv := os.Args[1:]
	// The image's entrypoint is /hello, and users write the command the way
	// they would without one (`-- /hello echo hi`): accept the program's own
	// path as a first argument, as multi-call binaries do.
	if len(argv) > 0 && argv[0] == "/hello" {
		argv = argv[1:]
	}
	if len(argv) < 1 {
		fail("usage: hello SUBCOMMAND [ARGS...]")
	}
	cmd, args := argv[0], argv[1:]
	switch cmd {
	case "echo":
		fmt.Println(strings.Join(args, " "))
	case "exit":
		need(args, 1)
		n, err := strconv.Atoi(args[0])
		check(err)
		os.Exit(n)
	case "sleep":
		need(args, 1)
		d, err := time.ParseDuration(args[0])
		check(err)
		time.Sleep(d)
	case "env":
		for _, kv := range os.Environ() {
			fmt.Println(kv)
		}
	case "pwd":
		wd, err := os.Getwd()
		check(err)
		fmt.Println(wd)
	case "stderr":
		fmt.Fprintln(os.Stderr, strings.Join(args, " "))
	case "write":
		need(args, 2)
		check(os.WriteFile(args[0], []byte(args[1]), 0o644))
		fmt.Println("ok")
	case "cat":
		need(args, 1)
		b, err := os.ReadFile(args[0])
		check(err)
		os.Stdout.Write(b)
	case "copy":
		need(args, 2)
		b, err := os.ReadFile(args[0])
		check(err)
		check(os.WriteFile(args[1], b, 0o644))
		fmt.Println("ok")
	case "ls":
		need(args, 1)
		entries, err := os.ReadDir(args[0])
		check(err)
		for _, e := range entries {
			fmt.Println(e.Name())
		}
	case "alloc":
		need(args, 1)
		mib, err := strconv.Atoi(args[0])
		check(err)
		alloc(mib)
		fmt.Println("ok")
	case "spin":
		need(args, 1)
		d, err := time.ParseDuration(args[0])
		check(err)
		spin(d)
	case "get":
		need(args, 1)
		get(args[0])
	case "serve":
		need(args, 1)
		serve(args)
	case "tick":
		need(args, 2)
		n, err := strconv.Atoi(args[0])
		check(err)
		d, err := time.ParseDuration(args[1])
		check(err)
		for i := 1; i <= n; i++ {
			fmt.Printf("tick %d %d\n", i, time.Now().UnixNano())
			if i < n {
				time.Sleep(d)
			}
		}
	case "count":
		need(args, 3)
		count(args)
	case "spam":
		need(args, 1)
		n, err := strconv.Atoi(args[0])
		check(err)
		spam(n)
	default:
		if !platformCommand(cmd, args) {
			fail("unknown subcommand " + cmd)
		}
	}
}

// alloc keeps mib MiB of touched memory live until it returns.
func alloc(mib int) {
	chunks := make([][]byte, 0, mib)
	for i := 0; i < mib; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		chunks = append(chunks, b)
	}
	sink = chunks
}

var sink [][]byte

var spinSink uint64

func spin(d time.Duration) {
	end := time.Now().Add(d)
	var x uint64 = 1
	for time.Now().Before(end) {
		for i := 0; i < 100000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	spinSink = x
}

func spam(n int) {
	line := []byte(strings.Repeat("x", 63) + "\n")
	buf := make([]byte, 0, 64*1024)
	for n > 0 {
		buf = buf[:0]
		for len(buf) < cap(buf)-64 && n > 0 {
			k := min(n, len(line))
			buf = append(buf, line[len(line)-k:]...)
			n -= k
		}
		_, err := os.Stdout.Write(buf)
		check(err)
	}
}

func need(args []string, n int) {
	if len(args) < n {
		fail(fmt.Sprintf("need %d argument(s), got %d", n, len(args)))
	}
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "hello:", msg)
	os.Exit(1)
}

// serve answers every HTTP request on args[0] with a fixed body (args[1],
// or "hello from offload") until it is killed.
func serve(args []string) {
	body := "hello from offload"
	if len(args) > 1 {
		body = args[1]
	}
	fmt.Println("serving on :" + args[0])
	err := http.ListenAndServe(":"+args[0], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, body)
	}))
	check(err)
}

// get prints the body of GET url.
func get(url string) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	check(err)
	defer resp.Body.Close()
	_, err = io.Copy(os.Stdout, resp.Body)
	check(err)
}

// count counts to args[0], one step every args[1], keeping its progress
// in the directory args[2] so that a run elsewhere resumes from it.
func count(args []string) {
	n, err := strconv.Atoi(args[0])
	check(err)
	d, err := time.ParseDuration(args[1])
	check(err)
	state := args[2] + "/state"
	start := 0
	if b, err := os.ReadFile(state); err == nil {
		start, err = strconv.Atoi(strings.TrimSpace(string(b)))
		check(err)
		fmt.Printf("resumed at %d\n", start)
	}
	for i := start + 1; i <= n; i++ {
		time.Sleep(d)
		fmt.Printf("count %d\n", i)
		check(os.WriteFile(state+".tmp", []byte(strconv.Itoa(i)), 0o644))
		check(os.Rename(state+".tmp", state))
	}
	fmt.Printf("total %d\n", n)
}
