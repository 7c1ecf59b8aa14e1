package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/storage/content"
)

// contentRoutes are the content, image and results routes.
func (s *apiServer) contentRoutes() []route {
	return []route{
		{"POST", "/api/v1/content/add", "Add a file or directory from the node's disk (absolute path)", s.addPath},
		{"POST", "/api/v1/content", "Add the request body as one file, streaming", s.addBody},
		{"GET", "/api/v1/content/{cid}", "Stream one file's bytes", s.catContent},
		{"POST", "/api/v1/content/{cid}/get", "Write content to a path on the node's disk", s.getContent},
		{"POST", "/api/v1/content/{cid}/publish", "Publish content: any peer may fetch it and it is announced in the DHT", s.publishContent},
		{"GET", "/api/v1/pins", "List pinned content", s.listPins},
		{"DELETE", "/api/v1/pins/{cid}", "Unpin content and collect unreferenced blocks", s.removePin},
		{"POST", "/api/v1/pins/{cid}/hold", "Keep content pinned only until a task ends", s.holdPin},
		{"POST", "/api/v1/images/push", "Add a local Docker image as content", s.pushImage},
		{"POST", "/api/v1/tasks/{id}/results", "Write a task's outputs to a path on the node's disk", s.taskResults},
	}
}

// readJSON decodes a JSON request body of one object and nothing after it
// (trailing data means the client sent something other than what it
// thinks), answering 400 or 413 itself.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	tooBig := func() bool {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", MaxRequestBody))
		return false
	}
	body := http.MaxBytesReader(w, r.Body, MaxRequestBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var over *http.MaxBytesError
		if errors.As(err, &over) {
			return tooBig()
		}
		writeError(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
		return false
	}
	rest, err := io.ReadAll(io.MultiReader(dec.Buffered(), body))
	if err != nil {
		return tooBig()
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		writeError(w, http.StatusBadRequest, "malformed JSON: data after the object")
		return false
	}
	return true
}

// progressEvent is one line of a streamed long operation (`?progress=1`):
// progress lines carry Bytes; the last line carries the result or Error.
type progressEvent struct {
	Bytes  int64  `json:"bytes,omitempty"`
	Result any    `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

// longOp runs op. With ?progress=1 it streams NDJSON progress lines and
// ends with the result; otherwise it answers with the result alone.
func (s *apiServer) longOp(w http.ResponseWriter, r *http.Request, op func(progress func(int64)) (any, error)) {
	if r.URL.Query().Get("progress") != "1" {
		res, err := op(nil)
		if err != nil {
			writeError(w, statusFor(err), err.Error())
			return
		}
		writeJSON(w, http.StatusOK, res)
		return
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	var n atomic.Int64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		last := int64(-1)
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if v := n.Load(); v != last {
					last = v
					_ = enc.Encode(progressEvent{Bytes: v})
					if flusher != nil {
						flusher.Flush()
					}
				}
			}
		}
	}()
	res, err := op(func(v int64) { n.Store(v) })
	close(done)
	<-stopped
	if err != nil {
		_ = enc.Encode(progressEvent{Error: err.Error()})
		return
	}
	_ = enc.Encode(progressEvent{Bytes: n.Load(), Result: res})
}

// statusFor maps content and task errors to HTTP statuses.
func statusFor(err error) int {
	switch {
	case errors.Is(err, content.ErrInvalidCID):
		return http.StatusBadRequest
	case errors.Is(err, content.ErrTimeout), errors.Is(err, market.ErrTaskNotFound), errors.Is(err, content.ErrNotLocal):
		return http.StatusNotFound
	case errors.Is(err, content.ErrUnsafeName), errors.Is(err, content.ErrDestExists), errors.Is(err, content.ErrIsDir):
		return http.StatusBadRequest
	case errors.Is(err, fs.ErrNotExist): // a path on the node's disk
		return http.StatusBadRequest
	case errors.Is(err, executor.ErrImageNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrNoOutputs), errors.Is(err, ErrNotHeld):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

type addRequest struct {
	Path       string `json:"path"`
	CIDVersion *int   `json:"cid_version,omitempty"`
	// Public publishes the content; it is private by default.
	Public bool `json:"public,omitempty"`
	// Temporary adds it for a task to hold it for (AddOptions.Temporary).
	Temporary bool `json:"temporary,omitempty"`
}

// CIDResponse is the answer of operations that produce content.
type CIDResponse struct {
	CID string `json:"cid"`
}

func cidVersion(v *int) int {
	if v == nil {
		return 1
	}
	return *v
}

// addPath adds a file or directory from the node's own disk (the CLI runs
// on the same machine as its node).
func (s *apiServer) addPath(w http.ResponseWriter, r *http.Request) {
	var req addRequest
	if !readJSON(w, r, &req) {
		return
	}
	if !filepath.IsAbs(req.Path) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("path %q must be absolute", req.Path))
		return
	}
	if v := cidVersion(req.CIDVersion); v != 0 && v != 1 {
		writeError(w, http.StatusBadRequest, "cid_version must be 0 or 1")
		return
	}
	s.longOp(w, r, func(progress func(int64)) (any, error) {
		c, err := s.n.Add(r.Context(), req.Path, AddOptions{CIDVersion: cidVersion(req.CIDVersion), Progress: progress, Public: req.Public, Temporary: req.Temporary})
		return CIDResponse{CID: c}, err
	})
}

// addBody adds the request body as one file, streaming.
func (s *apiServer) addBody(w http.ResponseWriter, r *http.Request) {
	v := 1
	if q := r.URL.Query().Get("cid_version"); q != "" {
		var err error
		if v, err = strconv.Atoi(q); err != nil || (v != 0 && v != 1) {
			writeError(w, http.StatusBadRequest, "cid_version must be 0 or 1")
			return
		}
	}
	var flags [2]bool // public, temporary
	for i, name := range []string{"public", "temporary"} {
		if q := r.URL.Query().Get(name); q != "" {
			var err error
			if flags[i], err = strconv.ParseBool(q); err != nil {
				writeError(w, http.StatusBadRequest, name+" must be true or false")
				return
			}
		}
	}
	c, err := s.n.AddReader(r.Context(), r.Body, r.URL.Query().Get("name"), AddOptions{CIDVersion: v, Public: flags[0], Temporary: flags[1]})
	if err != nil {
		writeError(w, statusFor(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, CIDResponse{CID: c})
}

// catContent streams a file's bytes.
func (s *apiServer) catContent(w http.ResponseWriter, r *http.Request) {
	rc, err := s.n.OpenContent(r.Context(), r.PathValue("cid"))
	if err != nil {
		writeError(w, statusFor(err), err.Error())
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = io.Copy(w, rc)
}

type destRequest struct {
	Dest string `json:"dest"`
}

func (s *apiServer) getContent(w http.ResponseWriter, r *http.Request) {
	var req destRequest
	if !readJSON(w, r, &req) {
		return
	}
	if !filepath.IsAbs(req.Dest) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("dest %q must be absolute", req.Dest))
		return
	}
	c := r.PathValue("cid")
	if _, err := content.ParseCID(c); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	timeout := s.n.cfg.ContentTimeout
	if q := r.URL.Query().Get("timeout"); q != "" {
		d, err := time.ParseDuration(q)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("timeout %q: want a positive duration such as 30s", q))
			return
		}
		timeout = d
	}
	s.longOp(w, r, func(progress func(int64)) (any, error) {
		err := s.n.content.Get(r.Context(), mustCID(c), req.Dest, content.GetOptions{Progress: progress, Timeout: timeout})
		return CIDResponse{CID: c}, err
	})
}

// publishContent publishes content the node holds completely.
func (s *apiServer) publishContent(w http.ResponseWriter, r *http.Request) {
	c := r.PathValue("cid")
	if err := s.n.Publish(r.Context(), c); err != nil {
		writeError(w, statusFor(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, CIDResponse{CID: c})
}

func mustCID(s string) cid.Cid {
	c, _ := content.ParseCID(s)
	return c
}

func (s *apiServer) listPins(w http.ResponseWriter, r *http.Request) {
	pins, err := s.n.Pins(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, pins)
}

func (s *apiServer) removePin(w http.ResponseWriter, r *http.Request) {
	n, err := s.n.Remove(r.Context(), r.PathValue("cid"))
	if err != nil {
		writeError(w, statusFor(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"removed_blocks": n})
}

// HoldRequest is the body of POST /api/v1/pins/{cid}/hold.
type HoldRequest struct {
	// Task is the task the content is held for: it is released once every
	// task it is held for has ended.
	Task string `json:"task"`
}

// holdPin pins content for one task only (Node.HoldForTask).
func (s *apiServer) holdPin(w http.ResponseWriter, r *http.Request) {
	var req HoldRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Task == "" {
		writeError(w, http.StatusBadRequest, "task is required")
		return
	}
	c := r.PathValue("cid")
	if err := s.n.HoldForTask(r.Context(), c, req.Task); err != nil {
		writeError(w, statusFor(err), err.Error())
		return
	}
	name, _ := s.n.pinName(r.Context(), mustCID(c))
	writeJSON(w, http.StatusOK, map[string]string{"cid": c, "task": req.Task, "pin": name})
}

type pushRequest struct {
	Ref string `json:"ref"`
	// Public publishes the image; it is private by default.
	Public bool `json:"public,omitempty"`
}

func (s *apiServer) pushImage(w http.ResponseWriter, r *http.Request) {
	var req pushRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Ref == "" {
		writeError(w, http.StatusBadRequest, "ref is required")
		return
	}
	s.longOp(w, r, func(progress func(int64)) (any, error) {
		c, err := s.n.PushImage(r.Context(), req.Ref, PushOptions{Public: req.Public, Progress: progress})
		return CIDResponse{CID: c}, err
	})
}

func (s *apiServer) taskResults(w http.ResponseWriter, r *http.Request) {
	var req destRequest
	if !readJSON(w, r, &req) {
		return
	}
	if !filepath.IsAbs(req.Dest) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("dest %q must be absolute", req.Dest))
		return
	}
	s.longOp(w, r, func(func(int64)) (any, error) {
		c, err := s.n.Results(r.Context(), r.PathValue("id"), req.Dest)
		return CIDResponse{CID: c}, err
	})
}
