package docker_test

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/offload-project/offload/executor/docker"
)

// TestDockerignoreExcludes: patterns × paths, with Docker's semantics.
func TestDockerignoreExcludes(t *testing.T) {
	for _, c := range []struct {
		name   string
		ignore string
		keep   []string // Keep'd after parsing, as ContextTar does
		in     []string // paths sent
		out    []string // paths left out
	}{
		{"plain name at the root", ".env\n", nil,
			[]string{"a/.env", "env", ".envrc"}, []string{".env"}},
		{"a directory and all below it", "node_modules\n.git\n", nil,
			[]string{"src/node_modules", "gitignore"}, []string{"node_modules", "node_modules/x/y.js", ".git", ".git/objects/ab/cd"}},
		{"leading slash is the root", "/secret\n", nil,
			[]string{"a/secret"}, []string{"secret", "secret/key"}},
		{"trailing slash and dots cleaned", "./build/\nout/../tmp\n", nil,
			[]string{"out", "x/build"}, []string{"build", "build/a", "tmp/a"}},
		{"*.md at the root only", "*.md\n", nil,
			[]string{"docs/a.md", "a.mdx"}, []string{"README.md", ".md"}},
		{"**/*.md anywhere", "**/*.md\n", nil,
			[]string{"a.mdx", "docs/md"}, []string{"README.md", "docs/a.md", "a/b/c/d.md"}},
		{"** in the middle: any number of directories", "a/**/z\n", nil,
			[]string{"z", "b/z", "a/zz"}, []string{"a/z", "a/b/z", "a/b/c/z", "a/b/z/below"}},
		{"trailing ** is what lies below", "a/**\n", nil,
			[]string{"a", "b/a/c"}, []string{"a/b", "a/b/c"}},
		{"** alone: everything", "**\n", nil,
			nil, []string{"a", "a/b", ".env"}},
		{"* and ? stop at /", "*/temp*\ntemp?\n", nil,
			[]string{"temp", "tempab", "a/b/temporary", "a/xtemp"}, []string{"a/temporary.txt", "a/temp", "tempa"}},
		{"character class and escape", "f[0-9]\n\\*star\n", nil,
			[]string{"fx", "xstar"}, []string{"f1", "*star"}},
		{"! re-includes under an excluded directory", "secret\n!secret/public.pem\n", nil,
			[]string{"secret/public.pem"}, []string{"secret", "secret/key", "secret/sub/public.pem"}},
		{"the last matching pattern wins", "*.md\n!README*.md\nREADME-secret.md\n", nil,
			[]string{"README.md", "README-x.md"}, []string{"a.md", "README-secret.md"}},
		{"an earlier ! loses to a later pattern", "!keep\n*\n", nil,
			nil, []string{"keep", "x"}},
		{"everything but src", "*\n!src\n", nil,
			[]string{"src", "src/a/b.go"}, []string{"x", ".git/config", "srcx"}},
		{"comments, blanks and whitespace", "# .env\n\n   \n  .env  \t\n #x\n!  keep.env\n", nil,
			[]string{"# .env", "x"}, []string{".env", "#x"}},
		{"a BOM before the first line", "\xEF\xBB\xBF# comment\n\xEF\xBB\xBFa\n", nil,
			[]string{"a", "# comment"}, []string{"\xEF\xBB\xBFa"}},
		{"CRLF line ends", ".env\r\n*.log\r\n", nil,
			[]string{"a/b.log"}, []string{".env", "b.log"}},
		{"the Dockerfile and .dockerignore are kept", "Dockerfile\n.dockerignore\n*\n", []string{"Dockerfile", ".dockerignore"},
			[]string{"Dockerfile", ".dockerignore"}, []string{"Dockerfile.prod", "x"}},
		{"a kept Dockerfile below an excluded directory", "build\n", []string{"build/app.Dockerfile"},
			[]string{"build/app.Dockerfile"}, []string{"build", "build/other"}},
		{"Keep is literal", "*\n", []string{"a[1]*.Dockerfile"},
			[]string{"a[1]*.Dockerfile"}, []string{"a1.Dockerfile", "a[1]x.Dockerfile"}},
		{"a root pattern matches nothing", "/\n.\n..\n../x\n", nil,
			[]string{"a", "x", "..x"}, nil},
		{"no .dockerignore patterns", "", nil,
			[]string{"a", ".git/config"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			ign, err := docker.ParseDockerignore([]byte(c.ignore))
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range c.keep {
				ign.Keep(k)
			}
			for _, p := range c.in {
				if by, out := ign.Excludes(p); out {
					t.Errorf("%q is left out by %q (line %d); want it sent", p, by, by.Line)
				}
			}
			for _, p := range c.out {
				if _, out := ign.Excludes(p); !out {
					t.Errorf("%q is sent; want it left out", p)
				}
			}
		})
	}
	var none *docker.Dockerignore
	if _, out := none.Excludes(".env"); out {
		t.Error("no .dockerignore left .env out")
	}
}

// TestDockerignoreNamesThePattern: the pattern that decided, with its
// line, for error messages.
func TestDockerignoreNamesThePattern(t *testing.T) {
	ign, err := docker.ParseDockerignore([]byte("# secrets\n/.env\n!  keep\n**/*.key\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p, out := ign.Excludes("a/b.key"); !out || p.Line != 4 || p.String() != "**/*.key" {
		t.Errorf("a/b.key: %v %+v", out, p)
	}
	if p, out := ign.Excludes("keep"); out || p.Line != 3 || p.String() != "!keep" || !p.Except {
		t.Errorf("keep: %v %+v", out, p)
	}
	if p, out := ign.Excludes(".env"); !out || p.Line != 2 || p.Pattern != ".env" {
		t.Errorf(".env: %v %+v", out, p)
	}
	if got := len(ign.Patterns()); got != 3 {
		t.Errorf("%d patterns, want 3", got)
	}
}

// TestParseDockerignoreRefuses: a malformed pattern or a file over the
// bounds is ErrBadContext, naming the line.
func TestParseDockerignoreRefuses(t *testing.T) {
	for _, c := range []struct {
		name, ignore, want string
	}{
		{"unclosed class", "ok\nsrc/[a-\n", `line 2: "src/[a-"`},
		{"trailing backslash", "a\\\n", "line 1"},
		{"bare !", "a\n\n  ! \n", "line 3"},
		{"too many patterns", strings.Repeat("a\n", docker.MaxDockerignorePatterns+1), "more than 10000 patterns"},
		{"too large", strings.Repeat("#", docker.MaxDockerignoreBytes+1), "larger than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := docker.ParseDockerignore([]byte(c.ignore))
			if !errors.Is(err, docker.ErrBadContext) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), ".dockerignore") {
				t.Errorf("got %v, want ErrBadContext with %q", err, c.want)
			}
		})
	}
}

// tarNames lists the entries of the build context ContextTar writes for dir.
func tarNames(t *testing.T, dir, dockerfile string) []string {
	t.Helper()
	f, err := os.Open(contextTar(t, dir, dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

// TestContextTarHonoursDockerignore: what the .dockerignore lists never
// enters the tarball (so never leaves the requestor); the rest does, with
// the Dockerfile and the .dockerignore even when listed.
func TestContextTarHonoursDockerignore(t *testing.T) {
	dir := writeContext(t, buildFiles{
		"Dockerfile":              "FROM scratch\nCOPY . /app\n",
		".dockerignore":           "# keep these on this machine\n.git\n.env\nsecret/\n!secret/public.pem\n**/*.log\nDockerfile\n.dockerignore\n",
		".git/config":             "[remote]",
		".git/objects/ab/cdef":    "blob",
		".env":                    "TOKEN=hunter2",
		"secret/key.pem":          "PRIVATE",
		"secret/sub/deep.pem":     "PRIVATE",
		"secret/public.pem":       "PUBLIC",
		"src/main.go":             "package main",
		"src/.env.example":        "TOKEN=",
		"src/debug.log":           "log",
		"run.sh*":                 "#!/bin/sh",
		"link->secret/key.pem":    "",
		"docs/env->../.env":       "",
		"docs/README.md":          "# docs",
		"node_modules/x/index.js": "x",
	})
	got := tarNames(t, dir, "Dockerfile")
	want := []string{".dockerignore", "Dockerfile", "docs/", "docs/README.md", "docs/env", "link", "node_modules/", "node_modules/x/",
		"node_modules/x/index.js", "run.sh", "secret/public.pem", "src/", "src/.env.example", "src/main.go"}
	if !slices.Equal(got, want) {
		t.Errorf("tarball holds\n%q\nwant\n%q", got, want)
	}
}

// TestContextTarRefusesBadDockerignore: a malformed .dockerignore stops
// the build on the requestor's side, naming the line, rather than
// sending what it was meant to keep back.
func TestContextTarRefusesBadDockerignore(t *testing.T) {
	for name, files := range map[string]buildFiles{
		"bad glob":  {"Dockerfile": "FROM scratch\n", ".dockerignore": ".env\n[oops\n", ".env": "x"},
		"directory": {"Dockerfile": "FROM scratch\n", ".dockerignore/x": "", ".env": "x"},
		"dangling":  {"Dockerfile": "FROM scratch\n", ".dockerignore->nowhere": "", ".env": "x"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeContext(t, files)
			err := docker.ContextTar(dir, "Dockerfile", io.Discard, 0)
			if err == nil || !strings.Contains(err.Error(), ".dockerignore") {
				t.Fatalf("got %v, want an error naming .dockerignore", err)
			}
			if name == "bad glob" && (!errors.Is(err, docker.ErrBadContext) || !strings.Contains(err.Error(), "line 2")) {
				t.Errorf("got %v, want ErrBadContext naming line 2", err)
			}
		})
	}
}

// TestCheckContextSaysDockerignoreExcluded: a COPY of what the
// .dockerignore left out fails the check before submission, naming the
// pattern that excluded it, also through a symlink.
func TestCheckContextSaysDockerignoreExcluded(t *testing.T) {
	for _, c := range []struct {
		name, dockerfile, want string
	}{
		{"a file", "COPY .env /app/\n", `.env is not in the build context: .dockerignore line 2 (".env") leaves it out`},
		{"below a directory", "COPY conf/secret/key /k\n", `conf/secret/key is not in the build context: .dockerignore line 3 ("**/secret") leaves it out`},
		{"through a symlink", "COPY cfg/key /k\n", `cfg/key is not in the build context: .dockerignore line 3 ("**/secret") leaves it out`},
		{"not excluded, just missing", "COPY nothere /x\n", "nothere is not in the build context"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeContext(t, buildFiles{
				"Dockerfile":       "FROM scratch\n" + c.dockerfile,
				".dockerignore":    "# secrets\n/.env\n**/secret\n",
				".env":             "TOKEN=x",
				"conf/secret/key":  "k",
				"cfg->conf/secret": "",
			})
			_, err := docker.CheckContext(contextTar(t, dir, "Dockerfile"), "Dockerfile", nil, 0)
			if !errors.Is(err, docker.ErrBadContext) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "line 2: COPY") {
				t.Fatalf("got %v, want ErrBadContext with %q", err, c.want)
			}
			if c.name == "not excluded, just missing" && strings.Contains(err.Error(), "dockerignore") {
				t.Errorf("a missing file not excluded blames the .dockerignore: %v", err)
			}
		})
	}
}
