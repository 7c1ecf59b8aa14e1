// Command wordcount is the workload of the pipeline example: three small
// steps that a multi-stage task runs in order in one sandbox, passing
// files through /work and /outputs. Standard library only, so it runs in
// an image FROM scratch.
//
//	/wordcount tokenize DIR|FILE OUT   lower-cased words of every file, one per line
//	/wordcount count WORDS OUT         "word,count" rows, most frequent first
//	/wordcount top N COUNTS            print the first N rows of COUNTS
package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

func main() {
	args := os.Args[1:]
	var err error
	switch {
	case len(args) == 3 && args[0] == "tokenize":
		err = tokenize(args[1], args[2])
	case len(args) == 3 && args[0] == "count":
		err = count(args[1], args[2])
	case len(args) == 3 && args[0] == "top":
		err = top(args[1], args[2])
	default:
		err = errors.New("usage: wordcount tokenize IN OUT | count WORDS OUT | top N COUNTS")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wordcount:", err)
		os.Exit(1)
	}
}

// tokenize writes the words of every regular file under in, in path order.
func tokenize(in, out string) error {
	var words []string
	err := filepath.WalkDir(in, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		words = append(words, strings.FieldsFunc(strings.ToLower(string(b)), func(r rune) bool {
			return !unicode.IsLetter(r)
		})...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("tokenize: %w", err)
	}
	if err := os.WriteFile(out, []byte(strings.Join(words, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("tokenize: %w", err)
	}
	fmt.Printf("%d words\n", len(words))
	return nil
}

// count writes "word,count" rows, most frequent first, ties by word.
func count(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return fmt.Errorf("count: %w", err)
	}
	defer f.Close()
	n := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if w := sc.Text(); w != "" {
			n[w]++
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("count: %w", err)
	}
	words := make([]string, 0, len(n))
	for w := range n {
		words = append(words, w)
	}
	sort.Slice(words, func(i, j int) bool {
		if n[words[i]] != n[words[j]] {
			return n[words[i]] > n[words[j]]
		}
		return words[i] < words[j]
	})
	o, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("count: %w", err)
	}
	w := csv.NewWriter(o)
	for _, word := range words {
		w.Write([]string{word, strconv.Itoa(n[word])})
	}
	w.Flush()
	if err := errors.Join(w.Error(), o.Close()); err != nil {
		return fmt.Errorf("count: %w", err)
	}
	fmt.Printf("%d distinct words\n", len(words))
	return nil
}

// top prints the first n rows of a counts file.
func top(nArg, in string) error {
	n, err := strconv.Atoi(nArg)
	if err != nil || n < 1 {
		return fmt.Errorf("top: %q is not a positive count", nArg)
	}
	f, err := os.Open(in)
	if err != nil {
		return fmt.Errorf("top: %w", err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return fmt.Errorf("top: %w", err)
	}
	for _, r := range rows[:min(n, len(rows))] {
		fmt.Printf("%s %s\n", r[0], r[1])
	}
	return nil
}
