package node

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3 description of the HTTP API, served at
// GET /openapi.json. It describes exactly the routes of the route table
// (a test checks both ways) and the JSON types of package client.
//
//go:embed openapi.json
var OpenAPI []byte

func (s *apiServer) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(OpenAPI)
}
