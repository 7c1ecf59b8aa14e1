// Package bench holds offload's benchmarks. Each prints ratios against a
// baseline measured in the same run.
package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/storage/content"
)

// benchBytes is the transfer size: OFFLOAD_BENCH_BYTES or 64 MiB.
func benchBytes(b *testing.B) int64 {
	if s := os.Getenv("OFFLOAD_BENCH_BYTES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("OFFLOAD_BENCH_BYTES=%q: want a positive byte count", s)
		}
		return n
	}
	return 64 << 20
}

func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Maxrss << 10 // KiB on Linux
}

func benchNode(b *testing.B, dir string) (host.Host, *content.Store) {
	b.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	var opts []content.Option
	if v := os.Getenv("OFFLOAD_BENCH_FETCH_CONCURRENCY"); v != "" {
		n, _ := strconv.Atoi(v)
		opts = append(opts, content.WithFetchConcurrency(n))
	}
	s, err := content.New(context.Background(), h, nil, dir, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return h, s
}

// BenchmarkBitswapVsTCP moves the same deterministic random bytes from node
// A to node B by bitswap (AddPath on A, Get on B: every block hash-checked,
// written to a file) and over a raw loopback TCP socket (sendfile on one
// side, sha256 and a file write on the other), and reports both throughputs,
// their ratio bitswap_vs_tcp_ratio and the process's peak RSS.
func BenchmarkBitswapVsTCP(b *testing.B) {
	n := benchBytes(b)
	work := b.TempDir()
	src := filepath.Join(work, "src.bin")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, io.LimitReader(rand.New(rand.NewSource(42)), n)); err != nil {
		b.Fatal(err)
	}
	f.Close()

	ha, sa := benchNode(b, filepath.Join(work, "a"))
	addStart := time.Now()
	root, err := sa.AddPath(context.Background(), src, content.AddOptions{})
	if err != nil {
		b.Fatal(err)
	}
	addDur := time.Since(addStart)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				f, err := os.Open(src)
				if err != nil {
					return
				}
				defer f.Close()
				io.Copy(c, f)
			}()
		}
	}()

	var bsDur, tcpDur time.Duration
	stopSampler := sampleAnonRSS()
	b.SetBytes(n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dest := filepath.Join(work, fmt.Sprintf("bs-%d", i))
		// A fresh receiver each round: re-fetching after a GC on the same
		// receiver can stall in bitswap (see the package report).
		hb, sb := benchNode(b, filepath.Join(work, fmt.Sprintf("b-%d", i)))
		if err := hb.Connect(context.Background(), peer.AddrInfo{ID: ha.ID(), Addrs: ha.Addrs()}); err != nil {
			b.Fatal(err)
		}
		// Content is private: A serves it to this receiver because it
		// shares it (as a requestor shares a task's inputs).
		release := sa.Share(hb.ID(), root)
		runtime.GC()
		b.StartTimer()

		t0 := time.Now()
		if err := sb.Get(context.Background(), root, dest, content.GetOptions{Timeout: 30 * time.Second, Peers: []peer.ID{ha.ID()}}); err != nil {
			b.Fatal(err)
		}
		bsDur += time.Since(t0)
		release()
		if os.Getenv("OFFLOAD_BENCH_VERBOSE") != "" {
			b.Logf("round %d: bitswap get %s", i, time.Since(t0))
		}

		b.StopTimer()
		if fi, err := os.Stat(dest); err != nil || fi.Size() != n {
			b.Fatalf("bitswap dest: %v size %d", err, fi.Size())
		}
		os.Remove(dest)
		sb.Close()
		hb.Close()
		os.RemoveAll(filepath.Join(work, fmt.Sprintf("b-%d", i)))
		tdest := filepath.Join(work, fmt.Sprintf("tcp-%d", i))
		b.StartTimer()

		t0 = time.Now()
		if err := tcpReceive(ln.Addr().String(), tdest, n); err != nil {
			b.Fatal(err)
		}
		tcpDur += time.Since(t0)

		b.StopTimer()
		os.Remove(tdest)
		b.StartTimer()
	}
	b.StopTimer()

	mb := float64(n) * float64(b.N) / (1 << 20)
	bsRate := mb / bsDur.Seconds()
	tcpRate := mb / tcpDur.Seconds()
	b.ReportMetric(bsRate, "bitswap_MiB/s")
	b.ReportMetric(tcpRate, "tcp_MiB/s")
	b.ReportMetric(bsRate/tcpRate, "bitswap_vs_tcp_ratio")
	peakAnon := stopSampler()
	b.ReportMetric(float64(peakRSS())/(1<<20), "peak_rss_MiB")
	b.ReportMetric(float64(peakAnon)/(1<<20), "peak_anon_rss_MiB")
	b.Logf("memory now: %s", procStatus("RssAnon", "RssFile", "VmHWM"))
	b.Logf("bytes=%d add=%.1f MiB/s bitswap=%.1f MiB/s tcp=%.1f MiB/s ratio=%.3f peak_rss=%d MiB",
		n, float64(n)/(1<<20)/addDur.Seconds(), bsRate, tcpRate, bsRate/tcpRate, peakRSS()>>20)
}

// sampleAnonRSS samples RssAnon (heap, stacks: what the process holds,
// without the file-backed pages of Badger's memory-mapped value log, which
// VmHWM counts) every 20 ms until the returned function is called, which
// returns the maximum in bytes.
func sampleAnonRSS() func() int64 {
	done := make(chan struct{})
	res := make(chan int64)
	go func() {
		var peak int64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v := anonRSS(); v > peak {
				peak = v
			}
			select {
			case <-done:
				res <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 { close(done); return <-res }
}

func anonRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "RssAnon:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// procStatus returns the named fields of /proc/self/status.
func procStatus(keys ...string) string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		for _, k := range keys {
			if strings.HasPrefix(line, k+":") {
				out = append(out, strings.Join(strings.Fields(line), " "))
			}
		}
	}
	return strings.Join(out, ", ")
}

// tcpReceive reads want bytes from addr into dest, hashing them as bitswap
// verifies its blocks.
func tcpReceive(addr, dest string, want int64) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	f, err := os.Create(dest)
	if err != nil {
		return err
	}
	h := sha256.New()
	got, err := io.Copy(io.MultiWriter(f, h), c)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("tcp: got %d bytes, want %d", got, want)
	}
	return nil
}
