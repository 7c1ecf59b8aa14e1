package docker

import (
	"errors"
	"path"
	"strings"
	"testing"
)

// naiveMatch is matchElems written the obvious way, exponential at worst.
func naiveMatch(p, n []string) bool {
	if len(p) == 0 {
		return len(n) == 0
	}
	if p[0] == "**" {
		for i := 0; i <= len(n); i++ {
			if naiveMatch(p[1:], n[i:]) {
				return true
			}
		}
		return false
	}
	return len(n) > 0 && matchElem(p[0], n[0]) && naiveMatch(p[1:], n[1:])
}

// FuzzParseDockerignore: any bytes parse or fail with ErrBadContext,
// within the bounds; the linear matcher agrees with the obvious one; a
// path that is sent never lies below a directory ContextTar would skip;
// and a kept path is never excluded.
func FuzzParseDockerignore(f *testing.F) {
	f.Add([]byte("# c\n.git\n.env\nsecret/\n!secret/public.pem\n**/*.log\n"), "secret/public.pem")
	f.Add([]byte("*\n!src\n"), "src/a/b")
	f.Add([]byte("a/**/b/**\n!a/**/c\n"), "a/x/b/c/d")
	f.Add([]byte("\xEF\xBB\xBF/x/../y\r\n!  *[a-c]?\\*\n"), "y/b1*")
	f.Add([]byte("[a-\n"), "a")
	f.Add([]byte("!\n"), "")
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		ign, err := ParseDockerignore(data)
		if err != nil {
			if !errors.Is(err, ErrBadContext) || !strings.Contains(err.Error(), DockerignoreName) {
				t.Fatalf("error %v is not ErrBadContext naming %s", err, DockerignoreName)
			}
			return
		}
		if len(ign.patterns) > MaxDockerignorePatterns {
			t.Fatalf("%d patterns", len(ign.patterns))
		}
		for _, p := range ign.patterns {
			if p.Line < 1 || p.Pattern == "" || (p.Pattern != "/" && strings.HasPrefix(p.Pattern, "/")) {
				t.Fatalf("pattern %+v", p)
			}
		}
		name = strings.Trim(path.Clean("/"+name), "/")
		if name == "" {
			return
		}
		n := strings.Split(name, "/")
		for _, p := range ign.patterns {
			if p.elems != nil && len(p.elems) <= 10 && len(n) <= 10 && matchElems(p.elems, n) != naiveMatch(p.elems, n) {
				t.Fatalf("pattern %q on %q: matchElems %v", p, name, matchElems(p.elems, n))
			}
		}
		if _, out := ign.Excludes(name); !out {
			for i := 1; i < len(n); i++ {
				dir := strings.Join(n[:i], "/")
				if _, dout := ign.Excludes(dir); dout && !ign.mayReinclude(dir) {
					t.Fatalf("%q is sent, but ContextTar would skip %q above it", name, dir)
				}
			}
		}
		ign.Keep(name)
		if p, out := ign.Excludes(name); out {
			t.Fatalf("kept %q is excluded by %q", name, p)
		}
	})
}
