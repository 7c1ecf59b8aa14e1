package docker_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/offload-project/offload/executor/docker"
)

func TestParseDockerfile(t *testing.T) {
	df, err := docker.ParseDockerfile([]byte(`# syntax=docker/dockerfile:1
# a comment
ARG BASE=alpine:3
FROM ${BASE} AS build
  env A=1 B="two words" \
      C='$not'
ENV LEGACY value with spaces
RUN echo hi && \
    # a comment inside a continuation
    echo there
RUN ["/bin/echo", "exec", "form"]
COPY ["a b", "c", "/dst/"]
ADD x.txt /x.txt
WORKDIR /app
USER 1000:1000
LABEL "k 1"=v k2=v2
EXPOSE 80 53/udp
CMD sh -c 'echo "$A"'
ENTRYPOINT []
`))
	if err != nil {
		t.Fatal(err)
	}
	if df.From.Line != 4 || df.From.Args[0] != "${BASE}" || len(df.Args) != 1 {
		t.Errorf("FROM %+v, ARGs %+v", df.From, df.Args)
	}
	base, err := df.Base(nil)
	if err != nil || base != "alpine:3" {
		t.Errorf("Base() = %q, %v", base, err)
	}
	if base, _ := df.Base(map[string]string{"BASE": "busybox:1"}); base != "busybox:1" {
		t.Errorf("Base(BASE=busybox:1) = %q", base)
	}
	want := []struct {
		line int
		cmd  string
		args []string
		json bool
	}{
		{5, "ENV", []string{"A=1", `B="two words"`, `C='$not'`}, false},
		{7, "ENV", []string{"LEGACY=value with spaces"}, false},
		{8, "RUN", []string{"echo hi &&  echo there"}, false},
		{11, "RUN", []string{"/bin/echo", "exec", "form"}, true},
		{12, "COPY", []string{"a b", "c", "/dst/"}, true},
		{13, "ADD", []string{"x.txt", "/x.txt"}, false},
		{14, "WORKDIR", []string{"/app"}, false},
		{15, "USER", []string{"1000:1000"}, false},
		{16, "LABEL", []string{`"k 1"=v`, "k2=v2"}, false},
		{17, "EXPOSE", []string{"80", "53/udp"}, false},
		{18, "CMD", []string{`sh -c 'echo "$A"'`}, false},
		{19, "ENTRYPOINT", []string{}, true},
	}
	if len(df.Steps) != len(want) {
		t.Fatalf("%d steps, want %d: %+v", len(df.Steps), len(want), df.Steps)
	}
	for i, w := range want {
		got := df.Steps[i]
		if got.Line != w.line || got.Cmd != w.cmd || got.JSON != w.json || !reflect.DeepEqual(got.Args, w.args) && !(len(got.Args) == 0 && len(w.args) == 0) {
			t.Errorf("step %d = line %d %s %q json=%v, want line %d %s %q json=%v", i, got.Line, got.Cmd, got.Args, got.JSON, w.line, w.cmd, w.args, w.json)
		}
	}
}

func TestParseDockerfileRefuses(t *testing.T) {
	for _, c := range []struct {
		name, df, want string
	}{
		{"empty", "", "no FROM"},
		{"no from", "RUN x\n", "line 1: RUN before FROM"},
		{"two stages", "FROM a\nFROM b\n", "line 2: a second FROM"},
		{"unknown", "FROM a\n\nONBUILD RUN x\n", `line 3: unknown or unsupported instruction "ONBUILD"`},
		{"healthcheck", "FROM a\nHEALTHCHECK NONE\n", `line 2: unknown or unsupported instruction "HEALTHCHECK"`},
		{"volume", "FROM a\nVOLUME /x\n", `"VOLUME"`},
		{"run mount", "FROM a\nRUN --mount=type=secret,id=x cat /run/secrets/x\n", "line 2: RUN: flags (--mount) are not supported"},
		{"run network", "FROM a\nRUN --network=host true\n", "flags (--network)"},
		{"copy from", "FROM a\nCOPY --from=other /x /x\n", "flags (--from)"},
		{"copy chown", "FROM a\nCOPY --chown=0:0 x /x\n", "flags (--chown)"},
		{"from platform", "FROM --platform=linux/amd64 a\n", "flags (--platform)"},
		{"add url", "FROM a\nADD https://example.com/x /x\n", "is a URL"},
		{"add git", "FROM a\nADD git@github.com:x/y /y\n", "is a URL"},
		{"add archive", "FROM a\nADD x.tar.gz /\n", "does not extract archives"},
		{"dotdot", "FROM a\nCOPY ../secret /x\n", "leaves the build context"},
		{"dotdot json", "FROM a\nCOPY [\"x/../../y\", \"/y\"]\n", "leaves the build context"},
		{"wildcard", "FROM a\nCOPY *.go /src/\n", "wildcards"},
		{"heredoc", "FROM a\nRUN <<EOF\necho\nEOF\n", "heredocs"},
		{"copy one word", "FROM a\nCOPY x\n", "at least one source and a destination"},
		{"quote", "FROM a\nENV A=\"open\n", "unterminated"},
		{"env name", "FROM a\nENV 1A=x\n", "invalid variable name"},
		{"escape directive", "# escape=`\nFROM a\n", "escape directive"},
		{"nul", "FROM a\x00\n", "NUL"},
		{"too many", "FROM a\n" + strings.Repeat("ENV A=1\n", docker.MaxInstructions), "more than 100 instructions"},
		{"too big", "FROM a\n#" + strings.Repeat("x", docker.MaxDockerfileBytes), "larger than"},
		{"from words", "FROM a b\n", "FROM IMAGE [AS NAME]"},
		{"workdir two", "FROM a\nWORKDIR /a /b\n", "exactly one argument"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := docker.ParseDockerfile([]byte(c.df))
			if !errors.Is(err, docker.ErrBadDockerfile) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrBadDockerfile with %q", err, c.want)
			}
		})
	}
}

func TestDockerfileBaseRefusesBadReferences(t *testing.T) {
	df, err := docker.ParseDockerfile([]byte("ARG B\nFROM $B\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := df.Base(nil); !errors.Is(err, docker.ErrBadDockerfile) {
		t.Errorf("an empty FROM: %v", err)
	}
	if _, err := df.Base(map[string]string{"B": "a b"}); !errors.Is(err, docker.ErrBadDockerfile) {
		t.Errorf("a FROM with a blank: %v", err)
	}
}

// FuzzParseDockerfile: a Dockerfile comes from a stranger; parsing it
// never panics, stays within its bounds, and whatever it accepts has a
// FROM, instructions in line order, and a base that expands or errors.
func FuzzParseDockerfile(f *testing.F) {
	for _, s := range []string{
		"FROM scratch\nCOPY . /\n",
		"ARG B=x\nFROM ${B:-y}\nENV A=\"1 2\" B='$A'\nRUN echo $A \\\n && true\nCMD [\"a\"]\n",
		"FROM a\nLABEL \"x y\"=z\nEXPOSE 80/udp\nUSER 1:1\nWORKDIR rel\nADD [\"a\", \"b/\"]\n",
		"# escape=\\\nFROM a AS b\nENTRYPOINT echo\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		df, err := docker.ParseDockerfile(data)
		if err != nil {
			if !errors.Is(err, docker.ErrBadDockerfile) {
				t.Fatalf("error not wrapping ErrBadDockerfile: %v", err)
			}
			return
		}
		if df.From.Cmd != "FROM" || len(df.From.Args) != 1 {
			t.Fatalf("accepted without a FROM: %+v", df.From)
		}
		if n := len(df.Args) + 1 + len(df.Steps); n > docker.MaxInstructions {
			t.Fatalf("%d instructions accepted", n)
		}
		last := df.From.Line
		for _, in := range df.Steps {
			if in.Line <= last {
				t.Fatalf("line %d after line %d", in.Line, last)
			}
			last = in.Line
			if in.Cmd == "COPY" || in.Cmd == "ADD" {
				for _, src := range in.Args[:len(in.Args)-1] {
					if strings.Contains(src, "://") {
						t.Fatalf("a URL source accepted: %q", src)
					}
				}
			}
		}
		if _, err := df.Base(map[string]string{"X": "y"}); err != nil && !errors.Is(err, docker.ErrBadDockerfile) {
			t.Fatalf("Base error not wrapping ErrBadDockerfile: %v", err)
		}
	})
}
