package node

import (
	"embed"
	"net/http"
)

// web holds the dashboard: one HTML page with its script and styles
// inline, so the binary serves it without any network access.
//
//go:embed web/*
var web embed.FS

// dashboardCSP confines the page to this node: inline script and style
// only, fetches to the same origin, no frames, no other origins.
const dashboardCSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; " +
	"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// dashboard serves the web dashboard. The page itself holds no secret: it
// reads the API token from the URL fragment (#token=..., which browsers
// never send to the server, so it stays out of logs), keeps it in the
// tab's sessionStorage, and calls the API with it as a bearer token.
func (s *apiServer) dashboard(w http.ResponseWriter, r *http.Request) {
	page, err := web.ReadFile("web/index.html")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "dashboard missing from the binary: "+err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(page)
}
