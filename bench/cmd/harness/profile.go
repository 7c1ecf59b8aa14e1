package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/offload-project/offload/bench/cluster"
)

// pprofEnv and pprofFile mirror cmd/offload's PprofEnv and PprofFile: a
// node started with pprofEnv set serves net/http/pprof on loopback and
// writes the URL to $home/pprofFile.
const (
	pprofEnv  = "OFFLOAD_PPROF"
	pprofFile = "pprof.url"
)

// profiling is --cpuprofile: where CPU profiles go and how long each is.
type profiling struct {
	dir     string
	seconds int
}

// start begins a CPU profile of every node (in the background) and returns
// a function that waits for them and reports where they went. With no dir
// it does nothing. A profile shorter than the batch covers its start; one
// longer than the batch includes idle time after it (the log says which).
func (p profiling) start(ctx context.Context, nodes []*cluster.Node, what string, logf func(string, ...any)) (wait func()) {
	if p.dir == "" {
		return func() {}
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := filepath.Join(p.dir, fmt.Sprintf("%s-%s.pprof", what, n.Name))
			if err := fetchProfile(ctx, n.Home, p.seconds, path); err != nil {
				logf("profile %s: %v", n.Name, err)
			}
		}()
	}
	return func() {
		batch := time.Since(t0)
		wg.Wait()
		logf("CPU profiles of %d nodes (%d s each, batch took %s) in %s", len(nodes), p.seconds, batch.Round(time.Millisecond), p.dir)
	}
}

// fetchProfile takes a CPU profile of seconds from the node whose home is
// home and writes it to path.
func fetchProfile(ctx context.Context, home string, seconds int, path string) error {
	b, err := os.ReadFile(filepath.Join(home, pprofFile))
	if err != nil {
		return fmt.Errorf("no profiling endpoint (was the node started with %s?): %w", pprofEnv, err)
	}
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSpace(string(b)), seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("fetch profile: %s: %s", resp.Status, msg)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("write profile: %w", err)
	}
	return f.Close()
}
