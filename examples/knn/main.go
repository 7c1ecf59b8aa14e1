// Command knn runs a k-nearest-neighbours classifier as an offload task:
// it generates a labelled dataset (three Gaussian clusters, deterministic),
// builds the classifier in ./classifier into an image FROM scratch through
// the Docker Engine API, starts a provider and a requestor on loopback,
// adds the dataset as content, runs the task with the dataset mounted at
// /inputs/data, reads /outputs/labels.csv back from the task's outputs and
// prints the accuracy against the known labels.
//
//	go run ./examples/knn              # everything, in this process
//	go run ./examples/knn -gen DIR     # only write DIR/data/{train,query}.csv and DIR/truth.csv
//	go run ./examples/knn -score DIR   # accuracy of DIR/out/labels.csv against DIR/truth.csv
package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/offload-project/offload/internal/testimage"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/node"
)

// Image is the tag the classifier image is built as.
const Image = "offload-example/knn:1"

// K is the number of neighbours the task asks for.
const K = 5

func main() {
	gen := flag.String("gen", "", "write the dataset under `DIR` and exit")
	scoreDir := flag.String("score", "", "print the accuracy of `DIR`/out/labels.csv against DIR/truth.csv and exit")
	flag.Parse()
	ctx := context.Background()
	var err error
	switch {
	case *gen != "":
		err = generate(*gen)
		if err == nil {
			fmt.Printf("wrote %s and %s\n", filepath.Join(*gen, "data"), filepath.Join(*gen, "truth.csv"))
		}
	case *scoreDir != "":
		var acc float64
		var n int
		acc, n, err = score(filepath.Join(*scoreDir, "out", "labels.csv"), filepath.Join(*scoreDir, "truth.csv"))
		if err == nil {
			fmt.Printf("accuracy %.3f on %d query points\n", acc, n)
		}
	default:
		_, err = run(ctx, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "knn:", err)
		os.Exit(1)
	}
}

// run does the whole example in this process, prints what happens and
// returns the accuracy on the query points.
func run(ctx context.Context, out io.Writer) (float64, error) {
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	root, err := os.MkdirTemp("", "offload-knn-")
	if err != nil {
		return 0, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(root)

	if err := generate(root); err != nil {
		return 0, err
	}
	say("dataset: 3 clusters, 450 training points, 180 query points")

	bctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	bin, err := testimage.BuildImage(bctx, Image, classifierDir())
	cancel()
	if err != nil {
		return 0, fmt.Errorf("build the classifier image: %w", err)
	}
	say("image %s built FROM scratch (%s)", Image, bin)

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	loopback := []string{"/ip4/127.0.0.1/tcp/0"}
	prov, err := node.New(ctx, node.Config{Home: filepath.Join(root, "provider"), Listen: loopback,
		Provider: true, Executors: []string{"docker"}, AllowImages: []string{Image}, Logger: log.With("node", "provider")})
	if err != nil {
		return 0, fmt.Errorf("start provider: %w", err)
	}
	defer prov.Close()
	req, err := node.New(ctx, node.Config{Home: filepath.Join(root, "requestor"), Listen: loopback,
		Bootstrap: prov.Identity().Addrs, Logger: log.With("node", "requestor")})
	if err != nil {
		return 0, fmt.Errorf("start requestor: %w", err)
	}
	defer req.Close()

	data, err := req.Add(ctx, filepath.Join(root, "data"), node.AddOptions{CIDVersion: 1})
	if err != nil {
		return 0, fmt.Errorf("add dataset: %w", err)
	}
	say("dataset added as content: %s", data)

	spec := node.TaskSpec{
		Name: "knn", Image: Image, Cmd: []string{bin, "-k", strconv.Itoa(K)},
		Inputs:    []wire.Input{{CID: data, Path: "/inputs/data"}},
		Resources: wire.Resources{CPUs: 1, MemoryBytes: 128 << 20},
		TimeoutMS: 60_000, Retries: wire.Retries(1),
	}
	sub, err := req.Submit(ctx, spec)
	if err != nil {
		return 0, fmt.Errorf("submit: %w", err)
	}
	say("task %s submitted: %s -k %d, dataset at /inputs/data", sub.ID, bin, K)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	t, err := req.Wait(wctx, sub.ID)
	if err != nil {
		return 0, fmt.Errorf("wait for %s: %w", sub.ID, err)
	}
	if t.State != "completed" {
		return 0, fmt.Errorf("task %s %s: %s", t.ID, t.State, t.Error)
	}
	say("task %s completed on %s: %s", t.ID, t.Provider, trimNL(t.Stdout))

	dest := filepath.Join(root, "out")
	outCID, err := req.Results(ctx, t.ID, dest)
	if err != nil {
		return 0, fmt.Errorf("results: %w", err)
	}
	say("outputs %s written to out/", outCID)
	acc, n, err := score(filepath.Join(dest, "labels.csv"), filepath.Join(root, "truth.csv"))
	if err != nil {
		return 0, err
	}
	say("accuracy %.3f on %d query points", acc, n)
	return acc, nil
}

// classifierDir is ./classifier next to this file.
func classifierDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "classifier")
}

// centers of the three clusters, and their labels.
var centers = []struct {
	x, y  float64
	label string
}{{0, 0, "red"}, {4, 0, "green"}, {2, 3.5, "blue"}}

const (
	sigma      = 0.9
	trainEach  = 150
	queryEach  = 60
	seed1      = 2024
	seed2      = 11
	floatDigit = 4
)

// generate writes dir/data/train.csv (x,y,label), dir/data/query.csv
// (id,x,y) and dir/truth.csv (id,label). The same dir gets the same bytes
// on every run.
func generate(dir string) error {
	rng := rand.New(rand.NewPCG(seed1, seed2))
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return fmt.Errorf("dataset dir: %w", err)
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', floatDigit, 64) }
	sample := func(c int) (string, string) {
		return f(centers[c].x + rng.NormFloat64()*sigma), f(centers[c].y + rng.NormFloat64()*sigma)
	}
	var train, query, truth [][]string
	train = append(train, []string{"x", "y", "label"})
	for c := range centers {
		for range trainEach {
			x, y := sample(c)
			train = append(train, []string{x, y, centers[c].label})
		}
	}
	// Query points come in a shuffled order so that their ids say nothing.
	var order []int
	for c := range centers {
		for range queryEach {
			order = append(order, c)
		}
	}
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	query = append(query, []string{"id", "x", "y"})
	truth = append(truth, []string{"id", "label"})
	for i, c := range order {
		id := fmt.Sprintf("q%03d", i)
		x, y := sample(c)
		query = append(query, []string{id, x, y})
		truth = append(truth, []string{id, centers[c].label})
	}
	for name, rows := range map[string][][]string{
		filepath.Join("data", "train.csv"): train, filepath.Join("data", "query.csv"): query, "truth.csv": truth,
	} {
		if err := writeCSV(filepath.Join(dir, name), rows); err != nil {
			return err
		}
	}
	return nil
}

func writeCSV(path string, rows [][]string) error {
	fh, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	w := csv.NewWriter(fh)
	if err := w.WriteAll(rows); err != nil {
		fh.Close()
		return fmt.Errorf("dataset %s: %w", path, err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("dataset %s: %w", path, err)
	}
	return nil
}

// score compares labels.csv (id,label) with truth.csv (id,label) and
// returns the fraction of query points labelled right.
func score(labelsPath, truthPath string) (float64, int, error) {
	labels, err := readPairs(labelsPath)
	if err != nil {
		return 0, 0, err
	}
	truth, err := readPairs(truthPath)
	if err != nil {
		return 0, 0, err
	}
	if len(labels) != len(truth) {
		return 0, 0, fmt.Errorf("%s has %d labels, want %d", labelsPath, len(labels), len(truth))
	}
	right := 0
	for id, want := range truth {
		if labels[id] == want {
			right++
		}
	}
	return float64(right) / float64(len(truth)), len(truth), nil
}

func readPairs(path string) (map[string]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read labels: %w", err)
	}
	defer fh.Close()
	rows, err := csv.NewReader(fh).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(rows) == 0 {
		return nil, errors.New(path + " is empty")
	}
	out := map[string]string{}
	for _, r := range rows[1:] {
		if len(r) != 2 {
			return nil, fmt.Errorf("%s: want id,label rows, got %v", path, r)
		}
		out[r[0]] = r[1]
	}
	return out, nil
}

func trimNL(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s
}
