// Package python_test runs the Python examples with the installed offload
// package (a fresh venv, no index) against real `offload node` processes.
package python_test

import (
	"os"
	"testing"

	"github.com/offload-project/offload/examples/internal/clitest"
)

func TestMain(m *testing.M) { os.Exit(clitest.Main(m)) }
