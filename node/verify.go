package node

import (
	"context"
	"fmt"
	"sync"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/executor/docker"
	"github.com/offload-project/offload/executor/wasm"
	"github.com/offload-project/offload/market"
)

// VerifyFunc checks one finished piece of a subtask group in the
// embedding program: nil accepts it, an error rejects it (the piece runs
// again elsewhere).
type VerifyFunc = market.VerifyFunc

// localExecutors runs verify steps on the requestor's own machine, building
// each executor the first time it is needed.
type localExecutors struct {
	n  *Node
	mu sync.Mutex
	m  map[string]executor.Executor
}

func (l *localExecutors) run(ctx context.Context, runtime string, spec executor.Spec) (*executor.Result, error) {
	ex, err := l.get(runtime)
	if err != nil {
		return nil, err
	}
	return ex.Run(ctx, spec)
}

func (l *localExecutors) get(runtime string) (executor.Executor, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ex, ok := l.m[runtime]; ok {
		return ex, nil
	}
	for _, ex := range l.n.executors { // a provider's own executors
		if ex.Name() == runtime {
			return ex, nil
		}
	}
	var ex executor.Executor
	var err error
	switch runtime {
	case "docker":
		ex, err = docker.New(docker.WithLogger(l.n.log))
	case "wasm":
		ex, err = wasm.New(wasmOptions(l.n.cfg, l.n.log)...)
	default:
		return nil, fmt.Errorf("unknown runtime %q for verify", runtime)
	}
	if err != nil {
		return nil, fmt.Errorf("verify executor %s: %w", runtime, err)
	}
	if l.m == nil {
		l.m = map[string]executor.Executor{}
	}
	l.m[runtime] = ex
	return ex, nil
}

func (l *localExecutors) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ex := range l.m {
		if c, ok := ex.(interface{ Close() error }); ok {
			c.Close()
		}
	}
}

// SubmitVerified submits a subtask group whose pieces fn accepts or
// rejects (in this process; after a restart only the spec's verify step
// applies).
func (n *Node) SubmitVerified(ctx context.Context, spec TaskSpec, fn VerifyFunc) (*Task, error) {
	t, err := n.req.SubmitVerified(ctx, spec, fn)
	if err != nil {
		return nil, err
	}
	return view(t), nil
}
