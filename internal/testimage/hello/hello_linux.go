//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// platformCommand runs the subcommands that need Linux (/proc, sockets,
// processes). It reports false for an unknown subcommand.
func platformCommand(cmd string, args []string) bool {
	switch cmd {
	case "net":
		netReport()
	case "whoami", "caps":
		b, err := os.ReadFile("/proc/self/status")
		check(err)
		fmt.Printf("uid=%d\n", os.Getuid())
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch k {
			case "CapEff", "CapPrm", "CapBnd", "NoNewPrivs":
				fmt.Printf("%s=%s\n", k, strings.TrimSpace(v))
			}
		}
	case "fork":
		need(args, 1)
		n, err := strconv.Atoi(args[0])
		check(err)
		forkN(n)
	case "child":
		// Started by fork: just stay alive for a while.
		time.Sleep(5 * time.Second)
	default:
		return false
	}
	return true
}

// netReport prints one "iface NAME" line per interface, "nonlo N" with the
// count of interfaces other than loopback, and the result of dialing a
// listener on loopback ("loopback ok" or "loopback ERR").
func netReport() {
	ifs, err := net.Interfaces()
	check(err)
	nonlo := 0
	for _, i := range ifs {
		fmt.Printf("iface %s\n", i.Name)
		if i.Flags&net.FlagLoopback == 0 {
			nonlo++
		}
	}
	fmt.Printf("nonlo %d\n", nonlo)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Printf("loopback %v\n", err)
		return
	}
	defer ln.Close()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		fmt.Printf("loopback %v\n", err)
		return
	}
	c.Close()
	fmt.Println("loopback ok")
}

// forkN starts up to n children of itself and prints "started K" and, when
// one failed, "fork error: ...". Children are killed before it returns.
func forkN(n int) {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	var cmds []*exec.Cmd
	var ferr error
	for i := 0; i < n; i++ {
		c := exec.Command(self, "child")
		if err := c.Start(); err != nil {
			ferr = err
			break
		}
		cmds = append(cmds, c)
	}
	fmt.Printf("started %d\n", len(cmds))
	if ferr != nil {
		fmt.Printf("fork error: %v\n", ferr)
	}
	for _, c := range cmds {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
}
