package docker

import (
	"bytes"
	"fmt"
	"path"
	"strings"
)

// A .dockerignore at a build context's root keeps files out of the
// context, with Docker's semantics: ContextTar never reads, let alone
// sends, what it excludes. That matters for more than size: the context
// goes to a provider the requestor does not trust, so .git, .env and keys
// must be left behind.

// Bounds on a .dockerignore.
const (
	// DockerignoreName is the file, at a build context's root, whose
	// patterns keep files out of the context.
	DockerignoreName = ".dockerignore"
	// MaxDockerignoreBytes bounds the size of a .dockerignore.
	MaxDockerignoreBytes = 1 << 20
	// MaxDockerignorePatterns bounds the patterns of a .dockerignore.
	MaxDockerignorePatterns = 10_000
)

// IgnorePattern is one pattern of a .dockerignore.
type IgnorePattern struct {
	// Line is the pattern's line in the file (from 1); 0 for a pattern
	// added by Keep.
	Line int
	// Pattern is the pattern as matched: cleaned, relative to the
	// context's root, without its "!".
	Pattern string
	// Except marks a "!" pattern, which re-includes what it matches.
	Except bool

	elems []string // Pattern's elements, "**" runs collapsed, "/**" appended
}

// String returns the pattern as it would be written, "!" included.
func (p IgnorePattern) String() string {
	if p.Except {
		return "!" + p.Pattern
	}
	return p.Pattern
}

// Dockerignore is a parsed .dockerignore: which paths of a build context
// are left out of it. The nil *Dockerignore excludes nothing. It is not
// safe for concurrent use with Keep.
type Dockerignore struct {
	patterns []IgnorePattern
	excepts  bool // some pattern is an exception
}

// ParseDockerignore parses the bytes of a .dockerignore as Docker does:
// one pattern a line; a line whose first character is '#' is a comment
// (a UTF-8 byte order mark before the first line is dropped); the rest of
// a line is trimmed of white space, and blank lines are skipped; a leading
// '!' (white space after it trimmed too) makes an exception, which
// re-includes what it matches. A pattern is cleaned (path.Clean) and is
// relative to the context's root, a leading '/' included, so /foo, ./foo
// and foo/ all name foo at the root.
//
// Each '/'-separated element of a pattern is matched against an element of
// a path with path.Match ('*' and '?' never match '/'; '*' within an
// element, as in "a**b", is a plain '*'); an element "**" matches any
// number of directories, none included, and a trailing "**" anything
// below. A pattern that matches a path or any directory above it decides
// for that path, and the last pattern to decide wins: "secret" and then
// "!secret/public.pem" send secret/public.pem and nothing else below
// secret.
//
// data larger than MaxDockerignoreBytes, more than MaxDockerignorePatterns
// patterns, a bare "!" or a pattern path.Match refuses are errors wrapping
// ErrBadContext that name the line.
func ParseDockerignore(data []byte) (*Dockerignore, error) {
	if len(data) > MaxDockerignoreBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrBadContext, DockerignoreName, MaxDockerignoreBytes)
	}
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
	d := &Dockerignore{}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: %s line %d: %q: %s", ErrBadContext, DockerignoreName, i+1, line, fmt.Sprintf(format, args...))
		}
		p := IgnorePattern{Line: i + 1}
		if rest, ok := strings.CutPrefix(line, "!"); ok {
			p.Except, line = true, strings.TrimSpace(rest)
			if line == "" {
				return nil, bad("an exception needs a pattern after the '!'")
			}
		}
		if len(d.patterns) >= MaxDockerignorePatterns {
			return nil, bad("more than %d patterns", MaxDockerignorePatterns)
		}
		p.Pattern = strings.TrimPrefix(path.Clean(line), "/")
		if p.Pattern == "" {
			p.Pattern = "/" // names the root, never an entry: matches nothing
		}
		for _, el := range strings.Split(p.Pattern, "/") {
			if _, err := path.Match(el, ""); err != nil {
				return nil, bad("%v", err)
			}
		}
		d.add(p)
	}
	return d, nil
}

// add compiles p and appends it.
func (d *Dockerignore) add(p IgnorePattern) {
	var elems []string
	if p.Pattern != "/" {
		for _, el := range strings.Split(p.Pattern, "/") {
			if el == "**" && len(elems) > 0 && elems[len(elems)-1] == "**" {
				continue
			}
			elems = append(elems, el)
		}
		if elems[len(elems)-1] == "**" {
			// A trailing ** matches what lies below, not the directory
			// itself: one element at least.
			elems = append(elems[:len(elems)-1], "*", "**")
		} else {
			// A pattern decides for what lies below what it matches.
			elems = append(elems, "**")
		}
	}
	p.elems = elems
	d.patterns = append(d.patterns, p)
	d.excepts = d.excepts || p.Except
}

// Keep adds a last exception for the path name (clean, relative), taken
// literally, so that it is never excluded: ContextTar keeps the
// Dockerfile and the .dockerignore this way, as Docker does, since the
// builder needs the one and the other explains what is missing.
func (d *Dockerignore) Keep(name string) {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	d.add(IgnorePattern{Pattern: r.Replace(name), Except: true})
}

// Patterns returns the patterns, in order.
func (d *Dockerignore) Patterns() []IgnorePattern {
	if d == nil {
		return nil
	}
	return append([]IgnorePattern(nil), d.patterns...)
}

// Excludes reports whether the path name (clean, relative to the context's
// root, '/'-separated) is left out of the context, and the pattern that
// decided (the last one matching name or a directory above it), if any.
func (d *Dockerignore) Excludes(name string) (IgnorePattern, bool) {
	if d == nil || name == "" || name == "." {
		return IgnorePattern{}, false
	}
	n := strings.Split(name, "/")
	for i := len(d.patterns) - 1; i >= 0; i-- {
		if p := d.patterns[i]; p.elems != nil && matchElems(p.elems, n) {
			return p, !p.Except
		}
	}
	return IgnorePattern{}, false
}

// mayReinclude reports whether an exception could match something below
// the directory dir (clean, relative): ContextTar must then walk an
// excluded directory rather than skip it.
func (d *Dockerignore) mayReinclude(dir string) bool {
	if d == nil || !d.excepts {
		return false
	}
	n := strings.Split(dir, "/")
	for _, p := range d.patterns {
		if p.Except && p.elems != nil && matchesAbove(p.elems, n) {
			return true
		}
	}
	return false
}

// matchElems reports whether the pattern elements p match all of the path
// elements n, "**" matching any number of them. Like glob matching with a
// single kind of star, backtracking to the last "**" seen is enough, so
// it takes at most len(p)*len(n) steps.
func matchElems(p, n []string) bool {
	pi, ni := 0, 0
	star, mark := -1, 0
	for ni < len(n) {
		switch {
		case pi < len(p) && p[pi] == "**":
			star, mark = pi, ni
			pi++
		case pi < len(p) && matchElem(p[pi], n[ni]):
			pi++
			ni++
		case star >= 0:
			mark++
			pi, ni = star+1, mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == "**" {
		pi++
	}
	return pi == len(p)
}

// matchesAbove reports whether the pattern elements p could match a path
// strictly below the directory whose elements are dir: whether p can
// consume dir and still have an element left. It may say yes for a
// pattern that matches nothing there (ContextTar then walks a directory
// for nothing), never no for one that does.
func matchesAbove(p, dir []string) bool {
	at := map[int]bool{}
	var reach func(i int)
	reach = func(i int) {
		for !at[i] {
			at[i] = true
			if i >= len(p) || p[i] != "**" {
				return
			}
			i++
		}
	}
	reach(0)
	for _, el := range dir {
		next := map[int]bool{}
		at, next = next, at
		for i := range next {
			switch {
			case i >= len(p):
			case p[i] == "**":
				reach(i)
			case matchElem(p[i], el):
				reach(i + 1)
			}
		}
		if len(at) == 0 {
			return false
		}
	}
	for i := range at {
		if i < len(p) {
			return true
		}
	}
	return false
}

// matchElem matches one element of a pattern against one of a path.
func matchElem(pattern, name string) bool {
	ok, _ := path.Match(pattern, name) // patterns were checked when parsed
	return ok
}
