package docker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// The Dockerfile subset a provider builds (build.go). A Dockerfile comes
// from a stranger, so it is parsed here, by offload, with bounds, and
// anything outside the subset is refused with its line number rather than
// handed to an engine builder.
//
// Supported, one stage only: FROM (an image the provider has, an image by
// CID, or scratch; ARG before FROM may name it), COPY and ADD from the
// build context (no URLs, no flags, no archive extraction), RUN (shell and
// exec forms, no flags), ENV, ARG, WORKDIR, USER, CMD, ENTRYPOINT, LABEL
// and EXPOSE. Lines continue with a trailing backslash; # starts a comment
// line. Variables ($X, ${X}, ${X:-default}, ${X:+alt}) are expanded in
// ENV, ARG, LABEL, EXPOSE, USER, WORKDIR, COPY and ADD, as docker does;
// RUN, CMD and ENTRYPOINT are left to the shell.

// Bounds on a Dockerfile.
const (
	// MaxDockerfileBytes bounds the size of a Dockerfile.
	MaxDockerfileBytes = 256 << 10
	// MaxInstructions bounds the instructions of a Dockerfile, FROM and
	// the ARGs before it included.
	MaxInstructions = 100
	// maxWords bounds the words of one instruction.
	maxWords = 256
)

// ErrBadDockerfile: the Dockerfile is malformed or uses something the
// provider does not build. The message names the line.
var ErrBadDockerfile = errors.New("dockerfile refused")

// Instruction is one instruction of a Dockerfile.
type Instruction struct {
	// Line is the 1-based line of the keyword.
	Line int
	// Cmd is the keyword in upper case ("RUN").
	Cmd string
	// Args are the words after the keyword, quotes kept (expand them with
	// the build's variables); for RUN, CMD and ENTRYPOINT in shell form
	// the one element is the whole command, and in exec form (JSON) the
	// elements are the argv.
	Args []string
	// JSON marks the exec (JSON array) form.
	JSON bool
	// Text is the instruction as written (continuations joined), for logs.
	Text string
}

// Dockerfile is a parsed Dockerfile of one stage.
type Dockerfile struct {
	// Args are the ARG instructions before FROM (they only serve FROM).
	Args []Instruction
	// From is the FROM instruction; Args[0] is the base image.
	From Instruction
	// Steps are the instructions after FROM, in order.
	Steps []Instruction
}

// supported lists the instructions this builder knows, for messages.
const supported = "FROM, COPY, ADD, RUN, ENV, ARG, WORKDIR, USER, CMD, ENTRYPOINT, LABEL, EXPOSE"

// ParseDockerfile parses a Dockerfile. Every error wraps ErrBadDockerfile
// and names the line at fault.
func ParseDockerfile(data []byte) (*Dockerfile, error) {
	if len(data) > MaxDockerfileBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadDockerfile, MaxDockerfileBytes)
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, fmt.Errorf("%w: holds a NUL byte (not a text file)", ErrBadDockerfile)
	}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	df := &Dockerfile{}
	var count int
	directives := true
	for i := 0; i < len(lines); i++ {
		start := i + 1
		line := strings.TrimSpace(lines[i])
		if strings.HasPrefix(line, "#") {
			if directives {
				if err := checkDirective(start, line); err != nil {
					return nil, err
				}
			}
			continue
		}
		if line == "" {
			continue
		}
		directives = false
		// Join continuation lines; comment and empty lines inside are
		// skipped, as docker does.
		for continues(line) && i+1 < len(lines) {
			line = strings.TrimSuffix(strings.TrimRightFunc(line, isSpace), "\\")
			i++
			next := strings.TrimSpace(lines[i])
			for (next == "" || strings.HasPrefix(next, "#")) && i+1 < len(lines) {
				i++
				next = strings.TrimSpace(lines[i])
			}
			if strings.HasPrefix(next, "#") {
				next = ""
			}
			line += " " + next
		}
		if continues(line) {
			line = strings.TrimSuffix(strings.TrimRightFunc(line, isSpace), "\\")
		}
		if count++; count > MaxInstructions {
			return nil, fmt.Errorf("%w: line %d: more than %d instructions", ErrBadDockerfile, start, MaxInstructions)
		}
		in, err := parseInstruction(start, line)
		if err != nil {
			return nil, err
		}
		switch {
		case in.Cmd == "FROM" && df.From.Cmd != "":
			return nil, fmt.Errorf("%w: line %d: a second FROM (multi-stage builds are not supported)", ErrBadDockerfile, start)
		case in.Cmd == "FROM":
			df.From = in
		case df.From.Cmd == "" && in.Cmd == "ARG":
			df.Args = append(df.Args, in)
		case df.From.Cmd == "":
			return nil, fmt.Errorf("%w: line %d: %s before FROM (a Dockerfile starts with FROM, after ARGs only)", ErrBadDockerfile, start, in.Cmd)
		default:
			df.Steps = append(df.Steps, in)
		}
	}
	if df.From.Cmd == "" {
		return nil, fmt.Errorf("%w: no FROM instruction", ErrBadDockerfile)
	}
	return df, nil
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' }

// continues reports whether a line ends with the escape character.
func continues(line string) bool {
	return strings.HasSuffix(strings.TrimRightFunc(line, isSpace), "\\")
}

// checkDirective refuses parser directives this parser would misread.
func checkDirective(line int, text string) error {
	k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(text, "#")), "=")
	if !ok {
		return nil
	}
	if strings.EqualFold(strings.TrimSpace(k), "escape") && strings.TrimSpace(v) != "\\" {
		return fmt.Errorf("%w: line %d: escape directive %q is not supported (only \\)", ErrBadDockerfile, line, strings.TrimSpace(v))
	}
	return nil
}

// parseInstruction parses one joined instruction line.
func parseInstruction(line int, text string) (Instruction, error) {
	kw, rest := text, ""
	if i := strings.IndexAny(text, " \t"); i >= 0 {
		kw, rest = text[:i], strings.TrimSpace(text[i+1:])
	}
	in := Instruction{Line: line, Cmd: strings.ToUpper(kw), Text: text}
	bad := func(format string, args ...any) (Instruction, error) {
		return Instruction{}, fmt.Errorf("%w: line %d: %s: %s", ErrBadDockerfile, line, in.Cmd, fmt.Sprintf(format, args...))
	}
	if strings.Contains(rest, "<<") && (in.Cmd == "RUN" || in.Cmd == "COPY" || in.Cmd == "ADD") {
		return bad("heredocs (<<) are not supported")
	}
	switch in.Cmd {
	case "RUN", "CMD", "ENTRYPOINT":
		if strings.HasPrefix(rest, "--") {
			return bad("flags (%s) are not supported", firstWord(rest))
		}
		if rest == "" && in.Cmd == "RUN" {
			return bad("no command")
		}
		if argv, ok := jsonArgs(rest); ok {
			if len(argv) == 0 && in.Cmd == "RUN" {
				return bad("an empty command")
			}
			if len(argv) > maxWords {
				return bad("more than %d arguments", maxWords)
			}
			in.Args, in.JSON = argv, true
			return in, nil
		}
		if rest != "" {
			in.Args = []string{rest}
		}
		return in, nil
	case "COPY", "ADD":
		if strings.HasPrefix(rest, "--") {
			return bad("flags (%s) are not supported", firstWord(rest))
		}
		words, isJSON := jsonArgs(rest)
		if !isJSON {
			var err error
			if words, err = splitWords(rest); err != nil {
				return bad("%v", err)
			}
		}
		if len(words) < 2 {
			return bad("needs at least one source and a destination")
		}
		if len(words) > maxWords {
			return bad("more than %d sources", maxWords)
		}
		in.Args, in.JSON = words, isJSON
		for _, src := range words[:len(words)-1] {
			if err := checkSource(in.Cmd, src); err != nil {
				return bad("%v", err)
			}
		}
		return in, nil
	}
	words, err := splitWords(rest)
	if err != nil {
		return bad("%v", err)
	}
	if len(words) > maxWords {
		return bad("more than %d words", maxWords)
	}
	in.Args = words
	switch in.Cmd {
	case "FROM":
		switch {
		case len(words) > 0 && strings.HasPrefix(words[0], "--"):
			return bad("flags (%s) are not supported", firstWord(words[0]))
		case len(words) == 1, len(words) == 3 && strings.EqualFold(words[1], "AS"):
			in.Args = words[:1]
		default:
			return bad("want FROM IMAGE [AS NAME]")
		}
	case "ENV", "LABEL":
		if len(words) == 0 {
			return bad("needs KEY=VALUE")
		}
		if in.Cmd == "ENV" && !strings.Contains(words[0], "=") {
			// The legacy form: ENV KEY rest of the line.
			k, v, _ := strings.Cut(rest, " ")
			if v = strings.TrimSpace(v); v == "" {
				return bad("%s has no value", k)
			}
			if !validName(k) {
				return bad("invalid variable name %q", k)
			}
			in.Args = []string{k + "=" + v}
			return in, nil
		}
		for _, w := range words {
			k, _, ok := strings.Cut(w, "=")
			if !ok || k == "" {
				return bad("%q is not KEY=VALUE", w)
			}
			if in.Cmd == "ENV" && !validName(k) {
				return bad("invalid variable name %q", k)
			}
		}
	case "ARG":
		if len(words) == 0 {
			return bad("needs a name")
		}
		for _, w := range words {
			if k, _, _ := strings.Cut(w, "="); !validName(k) {
				return bad("invalid name %q", k)
			}
		}
	case "WORKDIR", "USER":
		if len(words) != 1 {
			return bad("needs exactly one argument")
		}
	case "EXPOSE":
		if len(words) == 0 {
			return bad("needs a port")
		}
	default:
		return Instruction{}, fmt.Errorf("%w: line %d: unknown or unsupported instruction %q (supported: %s)", ErrBadDockerfile, line, kw, supported)
	}
	return in, nil
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	w, _, _ = strings.Cut(w, "=")
	return w
}

// jsonArgs parses the exec form: a JSON array of strings.
func jsonArgs(s string) ([]string, bool) {
	if !strings.HasPrefix(s, "[") {
		return nil, false
	}
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, false
	}
	return out, true
}

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func validName(s string) bool { return nameRE.MatchString(s) }

// checkSource refuses what a COPY or ADD source may never be, before any
// variable is expanded (expanded sources are checked again at build time).
func checkSource(cmd, src string) error {
	switch {
	case strings.Contains(src, "://") || strings.HasPrefix(src, "git@"):
		return fmt.Errorf("source %q is a URL: only files of the build context can be copied", src)
	case strings.ContainsAny(src, "*?["):
		return fmt.Errorf("source %q: wildcards are not supported", src)
	}
	if !strings.Contains(src, "$") {
		if _, err := contextPath(src); err != nil {
			return err
		}
	}
	if cmd == "ADD" && isArchiveName(src) {
		return fmt.Errorf("source %q: ADD does not extract archives here (COPY it and unpack it in a RUN)", src)
	}
	return nil
}

func isArchiveName(s string) bool {
	for _, ext := range []string{".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst"} {
		if strings.HasSuffix(strings.ToLower(s), ext) {
			return true
		}
	}
	return false
}

// contextPath turns a COPY source into a clean path relative to the build
// context ("" is the context itself). A leading / names the context's root,
// as docker reads it; a path that climbs out of the context is refused.
func contextPath(src string) (string, error) {
	p := path.Clean("/" + src)
	for _, el := range strings.Split(src, "/") {
		if el == ".." {
			return "", fmt.Errorf("source %q leaves the build context", src)
		}
	}
	return strings.TrimPrefix(p, "/"), nil
}

// splitWords splits s on blanks outside quotes, keeping quotes and
// escapes in the words (expand removes them).
func splitWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		quote byte
		in    bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == 0 && (c == ' ' || c == '\t'):
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
			continue
		case c == '\\' && quote != '\'' && i+1 < len(s):
			cur.WriteByte(c)
			i++
			c = s[i]
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
		case c == quote:
			quote = 0
		}
		cur.WriteByte(c)
		in = true
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// maxExpanded bounds the length of one expanded word, so that nested
// variables cannot blow a word up.
const maxExpanded = 64 << 10

// expand removes quotes and escapes from word and substitutes $NAME,
// ${NAME}, ${NAME:-default} and ${NAME:+alt} with lookup (unset: empty),
// outside single quotes.
func expand(word string, lookup func(string) (string, bool)) (string, error) {
	var out strings.Builder
	var quote byte
	for i := 0; i < len(word); i++ {
		if out.Len() > maxExpanded {
			return "", fmt.Errorf("%q expands to more than %d bytes", truncate(word), maxExpanded)
		}
		c := word[i]
		switch {
		case c == '\\' && quote != '\'' && i+1 < len(word):
			i++
			out.WriteByte(word[i])
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
		case quote != 0 && c == quote:
			quote = 0
		case c == '$' && quote != '\'' && i+1 < len(word):
			v, n, err := variable(word[i+1:], lookup)
			if err != nil {
				return "", fmt.Errorf("%q: %w", truncate(word), err)
			}
			if n == 0 {
				out.WriteByte(c)
				continue
			}
			out.WriteString(v)
			i += n
		default:
			out.WriteByte(c)
		}
	}
	if quote != 0 {
		return "", fmt.Errorf("%q: unterminated %c quote", truncate(word), quote)
	}
	if out.Len() > maxExpanded {
		return "", fmt.Errorf("%q expands to more than %d bytes", truncate(word), maxExpanded)
	}
	return out.String(), nil
}

// variable reads one reference after a $ in s and returns its value and
// the bytes it took (0: not a reference; the $ is literal).
func variable(s string, lookup func(string) (string, bool)) (string, int, error) {
	if s[0] != '{' {
		n := 0
		for n < len(s) && (s[n] == '_' || s[n] >= 'A' && s[n] <= 'Z' || s[n] >= 'a' && s[n] <= 'z' || n > 0 && s[n] >= '0' && s[n] <= '9') {
			n++
		}
		if n == 0 {
			return "", 0, nil
		}
		v, _ := lookup(s[:n])
		return v, n, nil
	}
	end := strings.IndexByte(s, '}')
	if end < 0 {
		return "", 0, errors.New("missing } in a variable")
	}
	body := s[1:end]
	name, word, op := body, "", ""
	if i := strings.Index(body, ":"); i >= 0 {
		name, op, word = body[:i], body[i:min(i+2, len(body))], body[min(i+2, len(body)):]
	}
	if !validName(name) {
		return "", 0, fmt.Errorf("bad variable ${%s}", body)
	}
	v, set := lookup(name)
	switch op {
	case "":
	case ":-":
		if !set || v == "" {
			v = word
		}
	case ":+":
		if set && v != "" {
			v = word
		} else {
			v = ""
		}
	default:
		return "", 0, fmt.Errorf("unsupported modifier in ${%s} (want :- or :+)", body)
	}
	if strings.ContainsAny(word, "${}\"'\\") {
		return "", 0, fmt.Errorf("nested expansion in ${%s} is not supported", body)
	}
	return v, end + 1, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Base is the image FROM names, with the ARGs before it expanded (build
// args given in args override their defaults).
func (df *Dockerfile) Base(args map[string]string) (string, error) {
	vars := map[string]string{}
	for _, in := range df.Args {
		if err := declareArgs(in, args, vars, nil); err != nil {
			return "", err
		}
	}
	base, err := expand(df.From.Args[0], lookupIn(vars))
	if err != nil {
		return "", fmt.Errorf("%w: line %d: FROM %v", ErrBadDockerfile, df.From.Line, err)
	}
	if base == "" || strings.ContainsAny(base, " \t\n") || len(base) > 512 {
		return "", fmt.Errorf("%w: line %d: FROM %q is not an image reference", ErrBadDockerfile, df.From.Line, base)
	}
	return base, nil
}

// declareArgs applies an ARG instruction: each NAME[=default] takes its
// build arg, else its default (expanded with env), into vars.
func declareArgs(in Instruction, args, vars map[string]string, env func(string) (string, bool)) error {
	for _, w := range in.Args {
		name, def, hasDef := strings.Cut(w, "=")
		if v, ok := args[name]; ok {
			vars[name] = v
			continue
		}
		if !hasDef {
			if _, ok := vars[name]; !ok {
				vars[name] = ""
			}
			continue
		}
		look := lookupIn(vars)
		if env != nil {
			look = func(k string) (string, bool) {
				if v, ok := env(k); ok {
					return v, true
				}
				return lookupIn(vars)(k)
			}
		}
		v, err := expand(def, look)
		if err != nil {
			return fmt.Errorf("%w: line %d: ARG %v", ErrBadDockerfile, in.Line, err)
		}
		vars[name] = v
	}
	return nil
}

func lookupIn(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// parsePort checks an EXPOSE word: PORT or PORT/PROTO (tcp, udp, sctp).
func parsePort(w string) (string, error) {
	port, proto, hasProto := strings.Cut(strings.ToLower(w), "/")
	if !hasProto {
		proto = "tcp"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q is not a port (1-65535)", w)
	}
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return "", fmt.Errorf("%q: protocol %q (want tcp, udp or sctp)", w, proto)
	}
	return strconv.Itoa(n) + "/" + proto, nil
}
