package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"
)

// PprofEnv names the environment variable that makes `offload node` serve
// Go's profiling endpoints (net/http/pprof under /debug/pprof/) on the
// loopback address it holds, e.g. 127.0.0.1:0. It is meant for
// benchmarks and investigations (bench/run --cpuprofile sets it), so it is
// an environment variable rather than a flag, and it refuses any address
// that is not loopback: the endpoints have no authentication.
const PprofEnv = "OFFLOAD_PPROF"

// PprofFile is the file under the node's home the profiling endpoint's URL
// is written to once it listens (the port may have been picked by the
// kernel).
const PprofFile = "pprof.url"

// startPprof serves the profiling endpoints on addr (loopback only) and
// writes their URL to home/PprofFile. The returned stop function shuts the
// server down and removes the file.
func startPprof(addr, home string, log *slog.Logger) (stop func(), err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", PprofEnv, addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%s=%q: the profiling endpoint listens on a loopback IP address only", PprofEnv, addr)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("pprof: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof server stopped", "err", err)
		}
	}()
	url := "http://" + ln.Addr().String()
	file := filepath.Join(home, PprofFile)
	if err := os.WriteFile(file, []byte(url+"\n"), 0o600); err != nil {
		srv.Close()
		<-done
		return nil, fmt.Errorf("write %s: %w", file, err)
	}
	log.Info("profiling endpoint", "url", url+"/debug/pprof/")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		<-done
		os.Remove(file)
	}, nil
}
