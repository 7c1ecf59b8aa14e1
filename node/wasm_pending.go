package node

import (
	"errors"

	"github.com/offload-project/offload/executor"
)

// newWASM builds the WASM executor.
func newWASM(Config) (executor.Executor, error) {
	return nil, errors.New("wasm executor not built yet")
}
