package node

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
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
	n     *Node
	srv   *http.Server
	ln    net.Listener
	token string
	home  string
	url   string // what $home/api says
	// fingerprint is the served certificate's (client.Fingerprint), ""
	// over plain HTTP.
	fingerprint string
	done        chan struct{}
	ctx         context.Context
	cancel      context.CancelFunc
}

// startAPI listens on addr, writes $home/api (and, over HTTPS,
// $home/api.fingerprint) and serves until close. Where it may listen and
// whether it serves HTTPS is apiTLSPlan's decision.
func startAPI(n *Node, addr string, allowRemote bool) (*apiServer, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("api address %q: %w", addr, err)
	}
	plan, err := apiTLSPlan(host, allowRemote, n.cfg.APITLS, n.cfg.APITLSCert, n.cfg.APITLSKey)
	if err != nil {
		return nil, err
	}
	token, err := EnsureToken(n.cfg.Home)
	if err != nil {
		return nil, err
	}
	var tlsConf *tls.Config
	var fingerprint string
	fpPath := filepath.Join(n.cfg.Home, client.FingerprintFile)
	if plan != tlsOff {
		cert, fp, err := apiCertificate(plan, n.cfg.Home, n.cfg.APITLSCert, n.cfg.APITLSKey, host)
		if err != nil {
			return nil, err
		}
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		fingerprint = fp
		if err := writeFileAtomic(fpPath, []byte(fp+"\n"), 0o600); err != nil {
			return nil, err
		}
	} else if err := os.Remove(fpPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// A stale pin would make clients refuse this plain-HTTP API's
		// successor over HTTPS, or pin nothing useful: remove it.
		return nil, fmt.Errorf("remove stale %s: %w", fpPath, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &apiServer{n: n, ln: ln, token: token, home: n.cfg.Home, fingerprint: fingerprint, done: make(chan struct{}), ctx: ctx, cancel: cancel}
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		TLSConfig:         tlsConf,
		// A plain-HTTP request to the HTTPS port is answered 400 by the
		// server; its logs would only be noise from whoever sent it.
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	s.url = scheme + "://" + ln.Addr().String()
	if err := writeFileAtomic(filepath.Join(n.cfg.Home, client.APIFile), []byte(s.url+"\n"), 0o600); err != nil {
		ln.Close()
		cancel()
		return nil, err
	}
	go func() {
		defer close(s.done)
		var err error
		if tlsConf != nil {
			err = s.srv.ServeTLS(ln, "", "")
		} else {
			err = s.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("api server", "err", err)
		}
	}()
	if fingerprint != "" {
		n.log.Info("api listening", "url", s.url, "fingerprint", fingerprint)
	} else {
		n.log.Info("api listening", "url", s.url)
	}
	return s, nil
}

// APIURL returns the URL the node's API listens on (what $home/api says),
// or "" when it serves no API.
func (n *Node) APIURL() string {
	if n.api == nil {
		return ""
	}
	return n.api.url
}

// APIFingerprint returns the SHA-256 fingerprint of the certificate the API
// serves (client.Fingerprint; also in $home/api.fingerprint), or "" when
// the API is plain HTTP or absent. Clients pin it (client.Client.Pin).
func (n *Node) APIFingerprint() string {
	if n.api == nil {
		return ""
	}
	return n.api.fingerprint
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
	os.Remove(filepath.Join(s.home, client.FingerprintFile))
	s.cancel() // ends event streams
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

// requireToken answers 401 unless the request carries the bearer token.
// routes wraps every route that is not Public in it.
func (s *apiServer) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="offload"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token (see $OFFLOAD_HOME/api.token)")
			return
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
// line of JSON per change, ending after the terminal state. The watch
// reads the task once and sends it as the first event; the response
// starts with that event, so an unknown task is still a 404 without a
// read of its own. With ?final=true only the terminal snapshot is sent.
func (s *apiServer) taskEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	if r.URL.Query().Get("final") == "true" {
		// Only the terminal snapshot (client.Wait): one encoding per task
		// instead of one per change.
		s.finalEvent(w, r, id)
		return
	}
	started := false
	err := s.n.Watch(r.Context(), id, func(t *Task) error {
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		if !started {
			started = true
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusOK)
		}
		if _, err := fmt.Fprintf(w, "event: task\ndata: %s\n\n", b); err != nil {
			return err
		}
		flusher.Flush()
		return nil
	})
	if !started {
		if err != nil && r.Context().Err() == nil {
			s.taskError(w, err)
		}
		return
	}
	if err != nil && r.Context().Err() == nil {
		s.n.log.Debug("event stream ended", "task", id, "err", err)
	}
}

// finalEvent answers taskEvents with ?final=true: headers at once, then
// one `task` event with the task once it is terminal. One watch both
// tells an unknown task (a 404 before any header) and waits.
func (s *apiServer) finalEvent(w http.ResponseWriter, r *http.Request, id string) {
	ch, stop, err := s.n.req.Watch(id)
	if err != nil {
		s.taskError(w, err)
		return
	}
	defer stop()
	sse, ok := startSSE(w)
	if !ok {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case t := <-ch:
			if !t.State.IsTerminal() {
				continue
			}
			// Not flushed: returning ends the response, and the event
			// goes out with its end in one write.
			if err := sse.write("", "task", view(t)); err != nil && r.Context().Err() == nil {
				s.n.log.Debug("final event", "task", id, "err", err)
			}
			return
		}
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
