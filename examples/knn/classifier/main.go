// Command classifier is a k-nearest-neighbours classifier, standard library
// only, meant to run as an offload task inside an image FROM scratch.
//
// It reads labelled training points (CSV: feature columns, then the label;
// a header row) and unlabelled query points (CSV: id, then the same feature
// columns; a header row), labels every query point with the majority label
// of its k nearest training points (Euclidean distance; ties go to the
// nearer neighbours' label), and writes "id,label" rows to the output file.
//
//	/classifier [-k 5] [-train /inputs/data/train.csv] [-query /inputs/data/query.csv] [-out /outputs/labels.csv]
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
)

func main() {
	k := flag.Int("k", 5, "number of neighbours")
	train := flag.String("train", "/inputs/data/train.csv", "training points: features..., label")
	query := flag.String("query", "/inputs/data/query.csv", "query points: id, features...")
	out := flag.String("out", "/outputs/labels.csv", "where to write id,label rows")
	flag.Parse()
	if err := run(*k, *train, *query, *out); err != nil {
		fmt.Fprintln(os.Stderr, "classifier:", err)
		os.Exit(1)
	}
}

type point struct {
	id    string
	x     []float64
	label string
}

func run(k int, trainPath, queryPath, outPath string) error {
	if k < 1 {
		return errors.New("k must be at least 1")
	}
	train, err := readCSV(trainPath, false)
	if err != nil {
		return err
	}
	query, err := readCSV(queryPath, true)
	if err != nil {
		return err
	}
	if len(train) == 0 {
		return fmt.Errorf("%s has no training points", trainPath)
	}
	f, err := os.Create(outPath)
	if err != nil {
		return fmt.Errorf("create output: %w", err)
	}
	w := csv.NewWriter(f)
	w.Write([]string{"id", "label"})
	counts := map[string]int{}
	for _, q := range query {
		if len(q.x) != len(train[0].x) {
			return fmt.Errorf("query %s has %d features, training points have %d", q.id, len(q.x), len(train[0].x))
		}
		label := classify(train, q.x, k)
		counts[label]++
		w.Write([]string{q.id, label})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	labels := make([]string, 0, len(counts))
	for l := range counts {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	fmt.Printf("classified %d points with k=%d against %d training points:", len(query), k, len(train))
	for _, l := range labels {
		fmt.Printf(" %s=%d", l, counts[l])
	}
	fmt.Println()
	return nil
}

// classify returns the majority label among the k nearest training points.
func classify(train []point, x []float64, k int) string {
	type neighbour struct {
		d     float64
		label string
	}
	ns := make([]neighbour, len(train))
	for i, p := range train {
		var d float64
		for j := range x {
			diff := p.x[j] - x[j]
			d += diff * diff
		}
		ns[i] = neighbour{d, p.label}
	}
	sort.SliceStable(ns, func(i, j int) bool { return ns[i].d < ns[j].d })
	ns = ns[:min(k, len(ns))]
	votes := map[string]int{}
	best := ""
	for _, n := range ns {
		votes[n.label]++
	}
	// Walk from the nearest so that a tie goes to the nearer label.
	for _, n := range ns {
		if best == "" || votes[n.label] > votes[best] {
			best = n.label
		}
	}
	return best
}

// readCSV reads points after a header row: "features..., label" rows, or
// "id, features..." rows when withID.
func readCSV(path string, withID bool) ([]point, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	if _, err := r.Read(); err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	var out []point
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(rec) < 2 {
			return nil, fmt.Errorf("%s:%d: want at least 2 columns", path, line)
		}
		var p point
		feats := rec
		if withID {
			p.id, feats = rec[0], rec[1:]
		} else {
			p.label, feats = rec[len(rec)-1], rec[:len(rec)-1]
		}
		for _, s := range feats {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, line, err)
			}
			p.x = append(p.x, v)
		}
		out = append(out, p)
	}
}
