package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
)

// MaxRequestBody bounds any JSON request body of the API.
const MaxRequestBody = 1 << 20

type apiServer struct {
	n      *Node
	srv    *http.Server
	ln     net.Listener
	token  string
	home   string
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
}

// startAPI listens on addr, writes $home/api and serves until close.
func startAPI(n *Node, addr string, allowRemote bool) (*apiServer, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("api address %q: %w", addr, err)
	}
	if !allowRemote && !isLoopback(host) {
		return nil, fmt.Errorf("api address %q is not loopback: pass --api-allow-remote to expose the API beyond this machine", addr)
	}
	token, err := EnsureToken(n.cfg.Home)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &apiServer{n: n, ln: ln, token: token, home: n.cfg.Home, done: make(chan struct{}), ctx: ctx, cancel: cancel}
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	url := "http://" + ln.Addr().String()
	if err := writeFileAtomic(filepath.Join(n.cfg.Home, client.APIFile), []byte(url+"\n"), 0o600); err != nil {
		ln.Close()
		cancel()
		return nil, err
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("api server", "err", err)
		}
	}()
	n.log.Info("api listening", "url", url)
	return s, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *apiServer) close() error {
	os.Remove(filepath.Join(s.home, client.APIFile))
	s.cancel() // ends event streams
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

// auth requires the bearer token on every /api/ route.
func (s *apiServer) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="offload"`)
				writeError(w, http.StatusUnauthorized, "missing or wrong bearer token (see $OFFLOAD_HOME/api.token)")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, client.Error{Error: msg})
}

func (s *apiServer) getID(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.n.Identity())
}

func (s *apiServer) getPeers(w http.ResponseWriter, r *http.Request) {
	peers := s.n.Peers()
	if peers == nil {
		peers = []client.Peer{}
	}
	writeJSON(w, http.StatusOK, peers)
}

func (s *apiServer) postTask(w http.ResponseWriter, r *http.Request) {
	var spec wire.TaskSpec
	if !readJSON(w, r, &spec) {
		return
	}
	t, err := s.n.Submit(r.Context(), spec)
	if err != nil {
		if errors.Is(err, wire.ErrInvalid) {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, t)
}

// listTasks answers every task, newest first; ?state=running,bidding keeps
// only tasks in one of the given states (repeat or comma-separate them).
func (s *apiServer) listTasks(w http.ResponseWriter, r *http.Request) {
	states, err := parseStates(r.URL.Query()["state"])
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ts, err := s.n.List()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := []*Task{}
	for _, t := range ts {
		if len(states) == 0 || states[t.State] {
			out = append(out, t)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// taskStates are the states a task filter may name.
var taskStates = market.States

// parseStates reads state filters ("running", "running,bidding"); none
// means every state.
func parseStates(vals []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, v := range vals {
		for _, st := range strings.Split(v, ",") {
			st = strings.ToLower(strings.TrimSpace(st))
			if st == "" {
				continue
			}
			if !slices.Contains(taskStates, market.State(st)) {
				return nil, fmt.Errorf("unknown task state %q (want one of %v)", st, taskStates)
			}
			out[st] = true
		}
	}
	return out, nil
}

func (s *apiServer) getTask(w http.ResponseWriter, r *http.Request) {
	t, err := s.n.Get(r.PathValue("id"))
	if err != nil {
		s.taskError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *apiServer) cancelTask(w http.ResponseWriter, r *http.Request) {
	if _, err := s.n.Get(r.PathValue("id")); err != nil {
		s.taskError(w, err) // the requestor's cancel does not say "not found" itself
		return
	}
	t, err := s.n.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		s.taskError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *apiServer) taskError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, market.ErrTaskNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, market.ErrInvalidTransition):
		writeError(w, http.StatusConflict, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// taskEvents streams the task's status as server-sent events, one `data:`
// line of JSON per change, ending after the terminal state.
func (s *apiServer) taskEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.n.Get(id); err != nil {
		s.taskError(w, err)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	err := s.n.Watch(r.Context(), id, func(t *Task) error {
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: task\ndata: %s\n\n", b); err != nil {
			return err
		}
		flusher.Flush()
		return nil
	})
	if err != nil && r.Context().Err() == nil {
		s.n.log.Debug("event stream ended", "task", id, "err", err)
	}
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
