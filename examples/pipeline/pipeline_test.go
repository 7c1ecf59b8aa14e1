// Package pipeline_test runs the pipeline example as its README does: two
// `offload node` processes, `offload submit -f task.yaml --wait --json`,
// then `offload results`.
package pipeline_test

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/examples/internal/clitest"
	"github.com/offload-project/offload/internal/testimage"
)

func TestMain(m *testing.M) { os.Exit(clitest.Main(m)) }

// TestPipelineTaskFile submits task.yaml (three stages, a local input, two
// artifacts, resources) from a requestor process to a provider process and
// checks every stage's output and both artifacts against a count made here.
func TestPipelineTaskFile(t *testing.T) {
	testimage.RequireDocker(t)
	if _, err := testimage.BuildImage(t.Context(), "offload-example/wordcount:1", "wordcount"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	prov := clitest.StartNode(t, filepath.Join(dir, "provider"), nil, []string{"--provider", "--executors", "docker"})
	req := clitest.StartNode(t, filepath.Join(dir, "requestor"), nil, []string{"--bootstrap", prov.ID(t).Addrs[0]})

	out, stderr, code := clitest.Offload(t, "submit", "--home", req.Home, "-f", "task.yaml", "--dry-run")
	if code != 0 || !strings.Contains(out, "valid (3 stages, 1 inputs") {
		t.Fatalf("dry run: %d %s %s", code, out, stderr)
	}

	var task client.Task
	clitest.MustJSON(t, &task, "submit", "--home", req.Home, "-f", "task.yaml", "--wait", "--json")
	if task.State != "completed" {
		t.Fatalf("task %s: %s\nprovider log:\n%s", task.State, task.Error, prov.Log())
	}
	words, counts := expected(t)
	var names []string
	for _, s := range task.Stages {
		names = append(names, s.Name)
		if s.ExitCode != 0 {
			t.Errorf("stage %s exited %d: %s", s.Name, s.ExitCode, s.Stderr)
		}
	}
	if strings.Join(names, ",") != "tokenize,count,report" {
		t.Fatalf("stages = %v", names)
	}
	if want := len(words); task.Stages[0].Stdout != strconv.Itoa(want)+" words\n" {
		t.Errorf("tokenize stdout = %q, want %d words", task.Stages[0].Stdout, want)
	}
	if want := strings.Join(counts[:3], "\n") + "\n"; strings.ReplaceAll(task.Stages[2].Stdout, " ", ",") != want {
		t.Errorf("report stdout = %q, want %q", task.Stages[2].Stdout, want)
	}
	if task.Spec.Resources.CPUs != 1 || task.Spec.Resources.MemoryBytes != 64<<20 {
		t.Errorf("resources = %+v", task.Spec.Resources)
	}

	res := filepath.Join(dir, "results")
	if _, stderr, code := clitest.Offload(t, "results", "--home", req.Home, task.ID, "-o", res); code != 0 {
		t.Fatalf("results: %s", stderr)
	}
	got, _ := os.ReadFile(filepath.Join(res, "words.txt"))
	if string(got) != strings.Join(words, "\n")+"\n" {
		t.Errorf("artifact words.txt = %q", got)
	}
	got, _ = os.ReadFile(filepath.Join(res, "counts.csv"))
	if string(got) != strings.Join(counts, "\n")+"\n" {
		t.Errorf("artifact counts.csv = %q", got)
	}
}

// expected tokenizes text/ the way the pipeline should and returns the
// words and the "word,count" rows, most frequent first.
func expected(t *testing.T) ([]string, []string) {
	var words []string
	for _, name := range []string{"text/a.txt", "text/b.txt"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		words = append(words, strings.FieldsFunc(strings.ToLower(string(b)), func(r rune) bool { return !unicode.IsLetter(r) })...)
	}
	n := map[string]int{}
	for _, w := range words {
		n[w]++
	}
	var uniq []string
	for w := range n {
		uniq = append(uniq, w)
	}
	sort.Slice(uniq, func(i, j int) bool {
		if n[uniq[i]] != n[uniq[j]] {
			return n[uniq[i]] > n[uniq[j]]
		}
		return uniq[i] < uniq[j]
	})
	rows := make([]string, len(uniq))
	for i, w := range uniq {
		rows[i] = w + "," + strconv.Itoa(n[w])
	}
	return words, rows
}
