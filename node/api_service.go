package node

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/market"
)

// serviceRoutes are the routes of live tasks (tunnels, exec) and volumes.
func (s *apiServer) serviceRoutes() []route {
	return []route{
		{"POST", "/api/v1/tasks/{id}/tunnels", "Forward a local TCP address to a port of a running service", s.openTunnel},
		{"GET", "/api/v1/tunnels", "List open tunnels", s.listTunnels},
		{"DELETE", "/api/v1/tunnels/{id}", "Close a tunnel", s.closeTunnel},
		{"POST", "/api/v1/tasks/{id}/exec", "Run a command inside a running service; streams its output", s.execTask},
		{"GET", "/api/v1/volumes", "List the requestor's portable volumes", s.listVolumes},
		{"DELETE", "/api/v1/volumes/{name}", "Forget a volume and release its content", s.removeVolume},
	}
}

// liveStatus maps errors of live-task operations to HTTP statuses.
func liveStatus(err error) int {
	switch {
	case errors.Is(err, market.ErrTaskNotFound), errors.Is(err, ErrTunnelNotFound), errors.Is(err, market.ErrVolumeNotFound):
		return http.StatusNotFound
	case errors.Is(err, market.ErrNotLive):
		return http.StatusConflict
	case errors.Is(err, market.ErrRefused):
		return http.StatusForbidden
	}
	return http.StatusBadRequest
}

func (s *apiServer) openTunnel(w http.ResponseWriter, r *http.Request) {
	var req client.TunnelRequest
	if !readJSON(w, r, &req) {
		return
	}
	t, err := s.n.OpenTunnel(r.Context(), r.PathValue("id"), req.Port, req.Local)
	if err != nil {
		writeError(w, liveStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, t.Info())
}

func (s *apiServer) listTunnels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.n.Tunnels())
}

func (s *apiServer) closeTunnel(w http.ResponseWriter, r *http.Request) {
	t, err := s.n.CloseTunnel(r.PathValue("id"))
	if err != nil {
		writeError(w, liveStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// execTask streams the command's output as newline-delimited ExecEvents,
// ending with its exit code or the error. A refusal known before anything
// ran is an ordinary error status.
func (s *apiServer) execTask(w http.ResponseWriter, r *http.Request) {
	var req client.ExecRequest
	if !readJSON(w, r, &req) {
		return
	}
	id := r.PathValue("id")
	if len(req.Cmd) == 0 {
		writeError(w, http.StatusBadRequest, "exec needs a command")
		return
	}
	if err := s.n.req.CheckTunnel(id, 0); err != nil {
		writeError(w, liveStatus(err), err.Error())
		return
	}
	flusher, _ := w.(http.Flusher)
	ew := &eventWriter{w: w, enc: json.NewEncoder(w), flush: flusher}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	code, err := s.n.Exec(r.Context(), id, req.Cmd, ew.stream(false), ew.stream(true))
	if err != nil {
		ew.send(client.ExecEvent{Error: err.Error()})
		return
	}
	ew.send(client.ExecEvent{ExitCode: &code})
}

// eventWriter writes ExecEvents, one goroutine at a time, flushing each.
type eventWriter struct {
	mu    sync.Mutex
	w     http.ResponseWriter
	enc   *json.Encoder
	flush http.Flusher
}

func (e *eventWriter) send(ev client.ExecEvent) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.enc.Encode(ev); err != nil {
		return err
	}
	if e.flush != nil {
		e.flush.Flush()
	}
	return nil
}

type eventStream struct {
	e      *eventWriter
	stderr bool
}

func (e *eventWriter) stream(stderr bool) *eventStream { return &eventStream{e: e, stderr: stderr} }

func (s *eventStream) Write(b []byte) (int, error) {
	ev := client.ExecEvent{Stdout: b}
	if s.stderr {
		ev = client.ExecEvent{Stderr: b}
	}
	if err := s.e.send(ev); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (s *apiServer) listVolumes(w http.ResponseWriter, r *http.Request) {
	vs, err := s.n.Volumes()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, vs)
}

func (s *apiServer) removeVolume(w http.ResponseWriter, r *http.Request) {
	v, err := s.n.RemoveVolume(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, liveStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, v)
}
