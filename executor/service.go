package executor

import (
	"context"
	"errors"
	"io"
)

// ErrServiceNotFound: the service (or the exec target) is not running.
var ErrServiceNotFound = errors.New("service not running")

// ServiceSpec is a long-running workload: Spec's sandbox, plus an internal
// network on which the provider (and the requestor's other services of the
// same namespace) reach its ports. The network has no route to any outside
// network.
type ServiceSpec struct {
	Spec
	// Network names the internal network the service joins; services with
	// the same Network reach each other (by IP, and by Aliases). The caller
	// derives it from the requestor and its namespace so that requestors
	// never share a network. Required.
	Network string `json:"network"`
	// Aliases are DNS names of the service on Network (the task's name).
	Aliases []string `json:"aliases,omitempty"`
	// Ports are the TCP ports the service listens on; only these can be
	// reached through ServiceHandle.Addr.
	Ports []int `json:"ports,omitempty"`
}

// ServiceHandle is one running service. Its methods are safe for
// concurrent use.
type ServiceHandle interface {
	// Addr returns host:port at which this process reaches the service's
	// port on its internal network. It fails for a port the spec did not
	// declare or once the service stopped (wrapping ErrServiceNotFound).
	Addr(ctx context.Context, port int) (string, error)
	// Exec runs cmd inside the service, streaming its output to stdout and
	// stderr (each written by one goroutine at a time), and returns its
	// exit code when it ends. ctx bounds the command; it is killed with the
	// service at the latest.
	Exec(ctx context.Context, cmd []string, stdout, stderr io.Writer) (int, error)
	// Done is closed when the service's main process exited (on its own or
	// stopped).
	Done() <-chan struct{}
	// Stop stops the service (if it still runs), removes it and returns what
	// it did: exit code, output tail, usage. Stop is idempotent: later calls
	// return the first result. It runs on a context of its own, bounded by
	// the implementation's cleanup timeout.
	Stop() (*Result, error)
}

// Service is implemented by executors that can run long-lived services.
// Providers find it by type assertion on an Executor.
type Service interface {
	// StartService creates and starts the service and returns as soon as its
	// main process runs. The service does not stop on its own at
	// spec.Timeout: the caller owns its lifetime and calls Stop. When it
	// cannot start, nothing is left behind.
	StartService(ctx context.Context, spec ServiceSpec) (ServiceHandle, error)
}
