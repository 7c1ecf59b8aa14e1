package node

import (
	"net/http"
	"strings"
)

// route is one entry of the API's route table. The table is the single
// list of what the HTTP server answers: the mux is built from it and the
// OpenAPI document (openapi.json) must describe exactly these routes, which
// a test checks.
type route struct {
	// Method and Pattern form the net/http ServeMux pattern
	// ("GET /api/v1/tasks/{id}").
	Method, Pattern string
	// Summary is a one-line description (the OpenAPI operation summary).
	Summary string
	// Handler answers the route.
	Handler http.HandlerFunc
}

// Public reports whether the route is served without the bearer token:
// everything outside /api/ (the dashboard page, the OpenAPI document and
// the metrics, none of which carries secrets).
func (r route) Public() bool { return !strings.HasPrefix(r.Pattern, "/api/") }

// table lists every route of the API.
func (s *apiServer) table() []route {
	rs := []route{
		{"GET", "/{$}", "Web dashboard (HTML; reads the token from the URL fragment)", s.dashboard},
		{"GET", "/openapi.json", "This OpenAPI description", s.openAPI},
		{"GET", "/metrics", "Prometheus metrics", s.metrics},
		{"GET", "/api/v1/id", "The node's peer id and addresses", s.getID},
		{"GET", "/api/v1/peers", "Connected peers", s.getPeers},
		{"POST", "/api/v1/tasks", "Submit a task; answers as soon as it is stored", s.postTask},
		{"GET", "/api/v1/tasks", "List tasks, newest first, optionally by state", s.listTasks},
		{"GET", "/api/v1/tasks/{id}", "One task's status, bids, executions and result", s.getTask},
		{"GET", "/api/v1/tasks/{id}/events", "Server-sent events: the task after every change, until it ends", s.taskEvents},
		{"POST", "/api/v1/tasks/{id}/cancel", "Cancel a task and stop it on its provider", s.cancelTask},
		{"GET", "/api/v1/events", "Server-sent events: every task after every change", s.allEvents},
		{"GET", "/api/v1/ledger", "Credits earned and spent per peer, with receipts and reputations", s.getLedger},
	}
	rs = append(rs, s.poolRoutes()...)
	rs = append(rs, s.serviceRoutes()...)
	return append(rs, s.contentRoutes()...)
}

// routes builds the mux from the route table, behind the token check.
func (s *apiServer) routes() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.table() {
		mux.HandleFunc(r.Method+" "+r.Pattern, r.Handler)
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, r.Method+" not allowed on "+r.URL.Path+" (allowed: "+strings.Join(allow, ", ")+")")
			return
		}
		writeError(w, http.StatusNotFound, "no such API route: "+r.Method+" "+r.URL.Path+" (see GET /openapi.json)")
	})
	return s.auth(mux)
}

// allowedMethods lists the methods that some route other than the /api/
// catch-all answers for r's path: the mux would otherwise answer a wrong
// method with the catch-all's 404.
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "/api/" && pattern != "" {
			out = append(out, m)
		}
	}
	return out
}
