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

// publicPatterns are the routes served without the bearer token: the
// dashboard page (it reads the token from its URL fragment and sends it
// itself) and the OpenAPI document, neither of which holds anything of the
// node. Everything else, /metrics included, needs the token: the metrics
// tell a stranger what the node runs, for whom and how busy it is. An
// operator who wants token-free scrapes serves them on an address of
// their own choice (Config.MetricsAddr).
var publicPatterns = map[string]bool{"/{$}": true, "/openapi.json": true}

// Public reports whether the route is served without the bearer token.
func (r route) Public() bool { return publicPatterns[r.Pattern] }

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
		{"GET", "/api/v1/tasks/{id}/logs", "Server-sent events: the task's output as it is written (live logs)", s.taskLogs},
		{"POST", "/api/v1/tasks/{id}/cancel", "Cancel a task and stop it on its provider", s.cancelTask},
		{"GET", "/api/v1/events", "Server-sent events: every task after every change", s.allEvents},
		{"GET", "/api/v1/ledger", "Credits earned and spent per peer, with receipts and reputations", s.getLedger},
		{"POST", "/api/v1/images/build", "Build an image from a Dockerfile and context on a provider that builds", s.buildImage},
	}
	rs = append(rs, s.poolRoutes()...)
	rs = append(rs, s.serviceRoutes()...)
	return append(rs, s.contentRoutes()...)
}

// routes builds the mux from the route table; every route that is not
// Public, and the /api/ catch-all (which would otherwise tell a stranger
// which routes exist), is wrapped in the token check itself, so however
// a request reaches a handler it meets the check.
func (s *apiServer) routes() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.table() {
		var h http.Handler = r.Handler
		if !r.Public() {
			h = s.requireToken(h)
		}
		mux.Handle(r.Method+" "+r.Pattern, h)
	}
	mux.Handle("/api/", s.requireToken(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, r.Method+" not allowed on "+r.URL.Path+" (allowed: "+strings.Join(allow, ", ")+")")
			return
		}
		writeError(w, http.StatusNotFound, "no such API route: "+r.Method+" "+r.URL.Path+" (see GET /openapi.json)")
	})))
	return mux
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
