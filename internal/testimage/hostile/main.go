// Command hostile is a workload that attacks the provider running it. It is
// the test workload of cmd/offload's hostile end-to-end suite: compiled
// statically for linux (packed FROM scratch into a Docker image by package
// testimage, binary at /hostile) and for wasip1 (run under wazero).
//
// Usage: hostile [ATTACK...]   (no argument: every attack)
//
// Attacks: uid, read-marker, outputs-symlink-file,
// outputs-symlink-dir-artifact, work-symlink-artifact, outputs-hardlink,
// outputs-fifo, outputs-socket, outputs-device, wasi-escape, fill-disk,
// fill-tmp, net-probe, volume-symlink (each function's comment says what
// it tries).
//
// Each attack prints exactly one line on stdout:
//
//	ATTACK <name>: refused: <reason>    the sandbox stopped it
//	ATTACK <name>: ESCAPED: <evidence>  it reached something of the host
//	ATTACK <name>: ok: <info>           a measurement (uid) or a trap laid for
//	                                    the provider (a FIFO in /outputs), to be
//	                                    judged by what the provider does next
//
// The program always exits 0, so that the provider goes on to collect the
// task's outputs (where several of the traps are).
//
// Inputs come from the environment:
//
//	MARKER_PATH  absolute host path of a secret file outside every mount; its
//	             content starts with MarkerPrefix, which is how this program
//	             recognizes that it read it (it prints what it read, so a
//	             leak also shows in its output)
//	MARKER_DIR   the directory of MARKER_PATH
//	HOME_PATH    the provider node's home directory
//	HOST_PORTS   comma-separated host:port the host listens on (net-probe)
//	VOLUME_PATH  path of a writable volume inside the task (volume-symlink)
//	FILL_LIMIT   bytes fill-disk and fill-tmp write at most (default 64 MiB)
package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// MarkerPrefix starts the content of the marker file the test places.
const MarkerPrefix = "OFFLOAD-HOSTILE-MARKER\n"

// up climbs from any directory to "/" in a relative symlink target.
var up = strings.Repeat("../", 24)

type verdict string

const (
	refused verdict = "refused"
	escaped verdict = "ESCAPED"
	ok      verdict = "ok"
)

type attack struct {
	name string
	run  func() (verdict, string)
}

var attacks = []attack{
	{"uid", attackUID},
	{"read-marker", attackReadMarker},
	{"outputs-symlink-file", attackOutputsSymlinkFile},
	{"outputs-symlink-dir-artifact", func() (verdict, string) { return attackSymlinkDir("/outputs") }},
	{"work-symlink-artifact", func() (verdict, string) { return attackSymlinkDir("/work") }},
	{"outputs-hardlink", attackOutputsHardlink},
	{"outputs-fifo", attackFIFO},
	{"outputs-socket", attackSocket},
	{"outputs-device", attackDevice},
	{"wasi-escape", attackWASIEscape},
	{"fill-disk", func() (verdict, string) { return attackFill("/outputs/fill") }},
	{"fill-tmp", func() (verdict, string) { return attackFill("/tmp/fill") }},
	{"net-probe", attackNetProbe},
	{"volume-symlink", attackVolumeSymlink},
}

func main() {
	names := os.Args[1:]
	// The Docker image has no entrypoint: tolerate the program's own path
	// as a first argument, as in `-- /hostile read-marker`.
	if len(names) > 0 && names[0] == "/hostile" {
		names = names[1:]
	}
	if len(names) == 0 {
		for _, a := range attacks {
			names = append(names, a.name)
		}
	}
	for _, name := range names {
		a, found := lookup(name)
		if !found {
			fmt.Fprintf(os.Stderr, "hostile: unknown attack %q\n", name)
			os.Exit(2)
		}
		v, msg := a.run()
		fmt.Printf("ATTACK %s: %s: %s\n", name, v, oneLine(msg))
	}
}

func lookup(name string) (attack, bool) {
	for _, a := range attacks {
		if a.name == name {
			return a, true
		}
	}
	return attack{}, false
}

// findings collects what an attack tried: escapes and plain notes.
type findings struct {
	escapes []string
	notes   []string
}

func (f *findings) escape(format string, args ...any) {
	f.escapes = append(f.escapes, fmt.Sprintf(format, args...))
}

func (f *findings) note(format string, args ...any) {
	f.notes = append(f.notes, fmt.Sprintf(format, args...))
}

// verdict is ESCAPED when anything escaped (with what was refused after
// it, in parentheses), else refused.
func (f *findings) verdict() (verdict, string) {
	notes := strings.Join(f.notes, "; ")
	if len(f.escapes) > 0 {
		msg := strings.Join(f.escapes, "; ")
		if notes != "" {
			msg += " (refused: " + notes + ")"
		}
		return escaped, msg
	}
	return refused, notes
}

// tryRead reads path and records an escape when the marker's content came
// back (printing it, so the leak shows in stdout too).
func (f *findings) tryRead(label, p string) {
	b, err := os.ReadFile(p)
	switch {
	case err != nil:
		f.note("%s: %s", label, errText(err))
	case bytes.HasPrefix(b, []byte(MarkerPrefix)):
		f.escape("%s: read the marker through %s: %q", label, p, clip(b))
	default:
		f.note("%s: read %d bytes that are not the marker", label, len(b))
	}
}

// tryList lists dir and records an escape when the listing shows the
// marker file or the node's identity key.
func (f *findings) tryList(label, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		f.note("%s: %s", label, errText(err))
		return
	}
	names := entryNames(entries)
	if isHostListing(names) {
		f.escape("%s: listed %s: %v", label, dir, names)
		return
	}
	f.note("%s: listed %d sandbox entries", label, len(names))
}

// isHostListing says whether names contain the marker file or the node's
// identity key, which exist only on the host.
func isHostListing(names []string) bool {
	markerName := path.Base(env("MARKER_PATH"))
	for _, n := range names {
		if n == markerName || n == "identity.key" {
			return true
		}
	}
	return false
}

func attackUID() (verdict, string) {
	return ok, fmt.Sprintf("uid=%d euid=%d gid=%d", os.Getuid(), os.Geteuid(), os.Getgid())
}

func attackReadMarker() (verdict, string) {
	var f findings
	f.tryRead("marker", env("MARKER_PATH"))
	f.tryList("marker dir", env("MARKER_DIR"))
	home := env("HOME_PATH")
	for _, name := range []string{"identity.key", "api.token", "swarm.key"} {
		p := path.Join(home, name)
		if b, err := os.ReadFile(p); err == nil {
			f.escape("read %s (%d bytes)", p, len(b))
		} else {
			f.note("%s: %s", name, errText(err))
		}
	}
	f.tryList("home", home)
	return f.verdict()
}

// attackOutputsSymlinkFile leaves links to the marker in /outputs: one
// absolute, one climbing with "..". The provider must not follow them when
// it collects the outputs.
func attackOutputsSymlinkFile() (verdict, string) {
	var f findings
	marker := env("MARKER_PATH")
	plant(&f, marker, "/outputs/leak")
	plant(&f, up+strings.TrimPrefix(marker, "/"), "/outputs/up")
	f.tryRead("read /outputs/leak", "/outputs/leak")
	f.tryRead("read /outputs/up", "/outputs/up")
	return f.verdict()
}

// attackSymlinkDir makes DIR/root a link to "/" (relative when the sandbox
// refuses absolute targets). The test asks for the artifact DIR/root +
// MARKER_PATH, a path through the link.
func attackSymlinkDir(dir string) (verdict, string) {
	var f findings
	link := dir + "/root"
	if err := os.Symlink("/", link); err != nil {
		f.note("symlink %s -> /: %s", link, errText(err))
		plant(&f, up, link)
	} else {
		f.note("planted %s -> /", link)
	}
	f.tryRead("read through "+link, link+env("MARKER_PATH"))
	return f.verdict()
}

// attackOutputsHardlink tries to hard-link the marker and files of the
// sandbox's own root into /outputs, and links two files of /outputs to each
// other.
func attackOutputsHardlink() (verdict, string) {
	var f findings
	if err := os.Link(env("MARKER_PATH"), "/outputs/hl-marker"); err == nil {
		f.escape("hard-linked the marker into /outputs/hl-marker")
		f.tryRead("read /outputs/hl-marker", "/outputs/hl-marker")
	} else {
		f.note("link marker: %s", errText(err))
	}
	self, _ := os.Executable()
	for _, p := range []string{"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/passwd", self} {
		if p == "" {
			continue
		}
		dst := "/outputs/hl-" + path.Base(p)
		if err := os.Link(p, dst); err == nil {
			f.note("linked %s to %s", p, dst)
		} else {
			f.note("link %s: %s", p, errText(err))
		}
	}
	if err := os.WriteFile("/outputs/hl-a", []byte("hardlink-source\n"), 0o644); err != nil {
		f.note("write /outputs/hl-a: %s", errText(err))
	} else if err := os.Link("/outputs/hl-a", "/outputs/hl-b"); err != nil {
		f.note("link /outputs/hl-a to /outputs/hl-b: %s", errText(err))
	} else {
		f.note("linked /outputs/hl-a to /outputs/hl-b")
	}
	return f.verdict()
}

func attackFIFO() (verdict, string) {
	if err := mkfifo("/outputs/fifo"); err != nil {
		return refused, "mkfifo /outputs/fifo: " + errText(err)
	}
	return ok, "planted the FIFO /outputs/fifo: the provider must refuse or skip it, never block on it"
}

func attackSocket() (verdict, string) {
	if err := bindSocket("/outputs/sock"); err != nil {
		return refused, "bind /outputs/sock: " + errText(err)
	}
	return ok, "planted the unix socket /outputs/sock: the provider must refuse or skip it"
}

func attackDevice() (verdict, string) {
	var f findings
	// 1,3 is /dev/null; 8,0 the first SCSI disk, 7,0 the first loop device.
	for _, d := range []struct {
		name         string
		block        bool
		major, minor uint32
	}{{"/outputs/null", false, 1, 3}, {"/outputs/disk", true, 8, 0}, {"/outputs/loop", true, 7, 0}} {
		if err := mknod(d.name, d.block, d.major, d.minor); err == nil {
			f.escape("made the device node %s (%d,%d)", d.name, d.major, d.minor)
		} else {
			f.note("mknod %s: %s", d.name, errText(err))
		}
	}
	return f.verdict()
}

// attackWASIEscape is aimed at the WASI runtime, whose host follows links
// with the host's own path resolution: links made inside the sandbox with
// targets outside it, then read, listed or written through. In a container
// the same links resolve inside the container and are harmless.
func attackWASIEscape() (verdict, string) {
	var f findings
	marker, markerDir := env("MARKER_PATH"), env("MARKER_DIR")
	climbMarker := up + strings.TrimPrefix(marker, "/")
	climbDir := up + strings.TrimPrefix(markerDir, "/")

	if err := os.Symlink(marker, "/tmp/abs"); err == nil {
		f.tryRead("read /tmp/abs -> marker", "/tmp/abs")
	} else {
		f.note("symlink /tmp/abs -> marker: %s", errText(err))
	}
	if plant(&f, climbMarker, "/tmp/m") {
		f.tryRead("read /tmp/m", "/tmp/m")
	}
	if plant(&f, climbMarker, "/outputs/m") {
		f.tryRead("read /outputs/m", "/outputs/m")
	}
	// A chain: c1 -> c2 -> marker.
	if plant(&f, climbMarker, "/tmp/c2") && plant(&f, "c2", "/tmp/c1") {
		f.tryRead("read chain /tmp/c1", "/tmp/c1")
	}
	// A link to the marker's directory: list it, create a file in it,
	// hard-link the marker out of it.
	if plant(&f, climbDir, "/tmp/d") {
		f.tryList("list /tmp/d", "/tmp/d")
		if err := os.WriteFile("/tmp/d/pwned", []byte("pwned\n"), 0o644); err == nil {
			f.escape("created pwned in the marker's directory through /tmp/d")
		} else {
			f.note("create /tmp/d/pwned: %s", errText(err))
		}
	}
	// The same link in /outputs (WASI links only within one preopened
	// directory): hard-link the marker out of its directory, then write
	// through the new name.
	if plant(&f, climbDir, "/outputs/d") {
		hl := "/outputs/hl-through-link"
		if err := os.Link("/outputs/d/"+path.Base(marker), hl); err == nil {
			f.escape("hard-linked the marker to %s through /outputs/d", hl)
			f.tryRead("read "+hl, hl)
			if w, err := os.OpenFile(hl, os.O_WRONLY|os.O_APPEND, 0); err == nil {
				if _, err := w.WriteString("pwned\n"); err == nil {
					f.escape("appended to the marker through %s", hl)
				}
				w.Close()
			}
		} else {
			f.note("link through /outputs/d: %s", errText(err))
		}
	}
	// A link to the node's home: its identity key must stay out of sight.
	if plant(&f, up+strings.TrimPrefix(env("HOME_PATH"), "/"), "/tmp/h") {
		f.tryList("list /tmp/h", "/tmp/h")
		if b, err := os.ReadFile("/tmp/h/identity.key"); err == nil {
			f.escape("read the node's identity.key through /tmp/h (%d bytes)", len(b))
		} else {
			f.note("read /tmp/h/identity.key: %s", errText(err))
		}
	}
	// Move a climbing link from /tmp into /outputs.
	if plant(&f, climbMarker, "/tmp/mv") {
		if err := os.Rename("/tmp/mv", "/outputs/renamed"); err == nil {
			f.tryRead("read /outputs/renamed", "/outputs/renamed")
		} else {
			f.note("rename /tmp/mv to /outputs: %s", errText(err))
		}
	}
	// Raw "..": paths handed to the runtime as written, not cleaned.
	if names, err := rawList("/tmp", ".."); err != nil {
		f.note("open /tmp/..: %s", errText(err))
	} else if runtime.GOOS == "wasip1" || isHostListing(names) {
		// Under WASI, /tmp has no parent the guest may see.
		f.escape("listed /tmp/..: %v", names)
	} else {
		f.note("listed /tmp/.. (the container's own root, %d entries)", len(names))
	}
	if err := rawLink("/tmp", climbMarker, "/outputs", "hl-dotdot"); err == nil {
		f.escape("hard-linked %s to /outputs/hl-dotdot", climbMarker)
		f.tryRead("read /outputs/hl-dotdot", "/outputs/hl-dotdot")
	} else {
		f.note("link ../ path: %s", errText(err))
	}
	return f.verdict()
}

// attackFill writes 1 MiB chunks to p until a write fails or FILL_LIMIT
// bytes are written; reaching the limit means the sandbox put no bound on
// the task's disk. The file is removed after, so that the outputs stay
// small.
func attackFill(p string) (verdict, string) {
	limit := int64(64 << 20)
	if s := env("FILL_LIMIT"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return refused, "bad FILL_LIMIT " + s
		}
		limit = n
	}
	n, err := fill(p, limit)
	os.Remove(p)
	if err == nil {
		return escaped, fmt.Sprintf("wrote %d bytes to %s with no error (no disk bound)", n, p)
	}
	return refused, fmt.Sprintf("%s stopped after %d bytes: %s", p, n, errText(err))
}

func fill(p string, limit int64) (int64, error) {
	file, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	chunk := bytes.Repeat([]byte{'f'}, 1<<20)
	var n int64
	for n < limit {
		k, err := file.Write(chunk[:min(int64(len(chunk)), limit-n)])
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	// Data may only meet the quota when it reaches the disk.
	if err := file.Sync(); err != nil {
		return n, err
	}
	return n, file.Close()
}

// attackNetProbe dials every HOST_PORTS entry, and the default gateway (the
// host, on a bridge network) on the same ports.
func attackNetProbe() (verdict, string) {
	var f findings
	var targets []string
	gw, gwErr := defaultGateway()
	if gwErr != nil {
		f.note("gateway: %s", errText(gwErr))
	}
	for _, hp := range strings.Split(env("HOST_PORTS"), ",") {
		if hp = strings.TrimSpace(hp); hp == "" {
			continue
		}
		targets = append(targets, hp)
		if _, port, err := net.SplitHostPort(hp); err == nil && gw != "" {
			targets = append(targets, net.JoinHostPort(gw, port))
		}
	}
	if len(targets) == 0 {
		return refused, "no HOST_PORTS given"
	}
	if runtime.GOOS == "wasip1" {
		f.note("WASI preview 1 cannot open sockets; Go's wasip1 net dials an in-process network")
	}
	for _, t := range targets {
		c, err := net.DialTimeout("tcp", t, time.Second)
		if err == nil {
			c.Close()
			f.escape("connected to %s", t)
		} else {
			f.note("%s: %s", t, errText(err))
		}
	}
	return f.verdict()
}

// defaultGateway reads the default route's gateway from /proc/net/route.
func defaultGateway() (string, error) {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[1] != "00000000" {
			continue
		}
		v, err := strconv.ParseUint(fields[2], 16, 32)
		if err != nil {
			return "", err
		}
		// The kernel prints the address in host (little-endian) order.
		return net.IPv4(byte(v), byte(v>>8), byte(v>>16), byte(v>>24)).String(), nil
	}
	return "", errors.New("no default route")
}

// attackVolumeSymlink leaves links to the marker and to "/" in a volume, so
// that the provider, collecting the volume as content, must not follow them.
func attackVolumeSymlink() (verdict, string) {
	vol := env("VOLUME_PATH")
	if vol == "" {
		return refused, "no VOLUME_PATH given"
	}
	var f findings
	if err := os.WriteFile(vol+"/kept.txt", []byte("volume-ok\n"), 0o644); err != nil {
		f.note("write %s/kept.txt: %s", vol, errText(err))
	}
	marker := env("MARKER_PATH")
	plant(&f, marker, vol+"/leak")
	plant(&f, up+strings.TrimPrefix(marker, "/"), vol+"/up")
	if err := os.Symlink("/", vol+"/root"); err != nil {
		plant(&f, up, vol+"/root")
	}
	f.tryRead("read "+vol+"/leak", vol+"/leak")
	f.tryRead("read "+vol+"/up", vol+"/up")
	f.tryRead("read through "+vol+"/root", vol+"/root"+marker)
	return f.verdict()
}

// plant makes the symlink link -> target and notes what happened.
func plant(f *findings, target, link string) bool {
	if err := os.Symlink(target, link); err != nil {
		f.note("symlink %s: %s", link, errText(err))
		return false
	}
	return true
}

func env(k string) string { return os.Getenv(k) }

func entryNames(entries []os.DirEntry) []string {
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Op + ": " + le.Err.Error()
	}
	return err.Error()
}

// clip keeps evidence short.
func clip(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

func oneLine(s string) string {
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s)
}
