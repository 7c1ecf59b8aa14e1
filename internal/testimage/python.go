package testimage

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Python returns the tag of the Python image (python3, numpy, venv and pip
// on Debian) that scripts/python-image.sh builds from Debian's packages and
// caches; it runs the script, which only prints the tag when the image
// exists. It skips or fails the test like RequireDocker when no engine
// answers; the first build needs root and Debian's mirror (about a minute).
func Python(tb testing.TB) string {
	tb.Helper()
	RequireDocker(tb)
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "python-image.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		tb.Fatalf("scripts/python-image.sh: %v\n%s", err, errb.String())
	}
	tag := strings.TrimSpace(out.String())
	if tag == "" {
		tb.Fatalf("scripts/python-image.sh printed no tag\n%s", errb.String())
	}
	return tag
}
