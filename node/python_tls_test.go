package node_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/internal/pyenv"
	"github.com/offload-project/offload/node"
)

// pythonPinScript connects to the node of $OFFLOAD_HOME over HTTPS three
// ways and prints one line per way: the pin from the home's
// api.fingerprint, the pin given as fingerprint= (must win over the
// home's), and no pin with the system's authorities.
const pythonPinScript = `
import os, sys
import offload

ident = offload.Client().initiate_connection()
print("home-pin", ident["id"])
try:
    offload.Client(fingerprint=sys.argv[1]).initiate_connection()
    print("wrong-pin accepted")
except offload.FingerprintError as e:
    print("wrong-pin refused", e)
os.rename(os.path.join(os.environ["OFFLOAD_HOME"], "api.fingerprint"), os.path.join(os.environ["OFFLOAD_HOME"], "moved"))
try:
    offload.Client().initiate_connection()
    print("no-pin accepted")
except offload.OffloadError as e:
    print("no-pin refused", e)
`

// TestPythonClientPinsFingerprint: sdk/python's client reaches an HTTPS API
// by the fingerprint the node wrote, refuses a certificate that is not the
// pinned one (before it sends the token), and refuses an unpinned
// self-signed one.
func TestPythonClientPinsFingerprint(t *testing.T) {
	python := pyenv.System(t)
	home := t.TempDir()
	n := startNode(t, home, false, nil, func(c *node.Config) { c.APITLS = true })
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	wrong := client.Fingerprint([]byte("another certificate"))
	cmd := exec.CommandContext(ctx, python, "-c", pythonPinScript, wrong)
	cmd.Dir = pyenv.SDK() // the package in the source tree (TestPythonClient tests the installed copy)
	cmd.Env = append(os.Environ(), "OFFLOAD_HOME="+home, client.FingerprintEnv+"=", "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{
		"home-pin " + n.ID().String(),
		"wrong-pin refused the API certificate at " + n.APIURL() + " does not match the pinned fingerprint",
		"no-pin refused the API certificate at " + n.APIURL() + " is not trusted",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("python output lacks %q:\n%s", want, got)
		}
	}
}
