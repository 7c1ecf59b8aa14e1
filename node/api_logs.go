package node

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/offload-project/offload/client"
)

// taskLogs streams a task's output as server-sent events: one `log` event
// per chunk, its id the position to resume from ("ATTEMPT:OFFSET"), which
// a reader sends back as Last-Event-ID (EventSource does) or ?from=. With
// ?follow=true the stream goes on as the task writes, until it ends. The
// node holds nothing of the output: each chunk goes out as it comes from
// the provider.
func (s *apiServer) taskLogs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	pos := r.URL.Query().Get("from")
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		pos = last
	}
	attempt, from, err := parseLogPos(pos)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	follow := false
	if f := r.URL.Query().Get("follow"); f != "" {
		if follow, err = strconv.ParseBool(f); err != nil {
			writeError(w, http.StatusBadRequest, "follow: "+err.Error())
			return
		}
	}
	if _, err := s.n.Get(id); err != nil {
		s.taskError(w, err)
		return
	}
	sse, ok := startSSE(w)
	if !ok {
		return
	}
	err = s.n.Logs(r.Context(), id, attempt, from, follow, func(c client.LogChunk) error {
		return sse.eventID(c.Next, "log", c)
	})
	if r.Context().Err() != nil {
		return
	}
	if err != nil {
		// The stream has started: the error goes in a last event.
		_ = sse.event("error", map[string]string{"error": err.Error()})
	}
	_ = sse.event("end", struct{}{})
}

// parseLogPos reads "ATTEMPT:OFFSET" ("" is the current attempt's start).
func parseLogPos(s string) (attempt int, offset int64, err error) {
	if s == "" {
		return -1, 0, nil
	}
	a, o, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, fmt.Errorf("from %q: want ATTEMPT:OFFSET", s)
	}
	if attempt, err = strconv.Atoi(a); err != nil || attempt < 0 {
		return 0, 0, fmt.Errorf("from %q: bad attempt", s)
	}
	if offset, err = strconv.ParseInt(o, 10, 64); err != nil || offset < 0 {
		return 0, 0, fmt.Errorf("from %q: bad offset", s)
	}
	return attempt, offset, nil
}
