package node

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/market/discovery"
	"github.com/offload-project/offload/market/wire"
)

// docPath turns a mux pattern into its OpenAPI path.
func docPath(pattern string) string {
	if pattern == "/{$}" {
		return "/"
	}
	return pattern
}

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPI)
	if err != nil {
		t.Fatalf("openapi.json does not load: %v", err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("openapi.json is not valid OpenAPI 3: %v", err)
	}
	return doc
}

// TestOpenAPIMatchesRouteTable: every route of the table is described, and
// the document describes no route the server lacks.
func TestOpenAPIMatchesRouteTable(t *testing.T) {
	doc := loadOpenAPI(t)
	inTable := map[string]route{}
	for _, r := range (&apiServer{}).table() {
		key := r.Method + " " + docPath(r.Pattern)
		if _, dup := inTable[key]; dup {
			t.Errorf("route %s twice in the table", key)
		}
		inTable[key] = r
	}
	inDoc := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			inDoc[method+" "+path] = op
		}
	}
	for key, r := range inTable {
		op, ok := inDoc[key]
		if !ok {
			t.Errorf("route %s is not in node/openapi.json: describe it there", key)
			continue
		}
		if op.Summary != r.Summary {
			t.Errorf("%s: summary %q in openapi.json, %q in the route table", key, op.Summary, r.Summary)
		}
		public := op.Security != nil && len(*op.Security) == 0
		if public != r.Public() {
			t.Errorf("%s: openapi.json says public=%v, the server %v", key, public, r.Public())
		}
		if !r.Public() && op.Responses.Status(http.StatusUnauthorized) == nil {
			t.Errorf("%s: no 401 response described", key)
		}
	}
	for key := range inDoc {
		if _, ok := inTable[key]; !ok {
			t.Errorf("openapi.json describes %s, which the route table lacks", key)
		}
	}
	if _, ok := doc.Components.SecuritySchemes["bearer"]; !ok {
		t.Error("no bearer security scheme")
	}
}

// jsonFields lists the JSON names of a struct's fields.
func jsonFields(typ reflect.Type) []string {
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// TestOpenAPISchemasMatchTypes: each schema has exactly the JSON fields of
// the Go type the API encodes or decodes.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	types := map[string]any{
		"Error": client.Error{}, "Identity": client.Identity{}, "Peer": client.Peer{},
		"Task": client.Task{}, "Bid": client.Bid{}, "Execution": client.Execution{}, "Stage": client.Stage{},
		"Usage": client.Usage{}, "TaskSpec": wire.TaskSpec{}, "Resources": wire.Resources{}, "Input": wire.Input{},
		"StageSpec": wire.Stage{}, "Subtask": wire.Subtask{}, "Verify": wire.Verify{}, "Child": client.Child{},
		"Ledger": client.Ledger{}, "LedgerEntry": client.LedgerEntry{}, "PeerBalance": client.PeerBalance{},
		"Reputation": client.Reputation{},
		"Provider":   client.Provider{}, "Capacity": client.Capacity{}, "Hardware": wire.Hardware{}, "GPU": wire.GPU{},
		"PoolStats": discovery.PoolStats{}, "Pin": PinInfo{}, "CIDResponse": CIDResponse{}, "AddRequest": addRequest{},
		"DestRequest": destRequest{}, "PushRequest": pushRequest{}, "ProgressEvent": progressEvent{},
		"Tunnel": client.Tunnel{}, "TunnelRequest": client.TunnelRequest{}, "ExecRequest": client.ExecRequest{},
		"ExecEvent": client.ExecEvent{}, "Volume": client.Volume{}, "VolumeSpec": wire.Volume{},
	}
	for name, v := range types {
		ref, ok := doc.Components.Schemas[name]
		if !ok || ref.Value == nil {
			t.Errorf("schema %s missing from openapi.json", name)
			continue
		}
		var props []string
		for p := range ref.Value.Properties {
			props = append(props, p)
		}
		slices.Sort(props)
		if want := jsonFields(reflect.TypeOf(v)); !slices.Equal(props, want) {
			t.Errorf("schema %s has properties %v; %T encodes %v: update node/openapi.json", name, props, v, want)
		}
	}
}

// TestEveryAPIRouteNeedsToken: without the token, or with a wrong one,
// every /api/ route answers 401 before its handler runs.
func TestEveryAPIRouteNeedsToken(t *testing.T) {
	s := &apiServer{token: "right-token"}
	h := s.routes()
	fill := strings.NewReplacer("{id}", "01jtask", "{cid}", "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba")
	for _, r := range s.table() {
		if r.Public() {
			continue
		}
		for _, auth := range []string{"", "Bearer wrong", "right-token", "Basic right-token", "Bearer right-token2"} {
			req := httptest.NewRequest(r.Method, fill.Replace(r.Pattern), strings.NewReader("{}"))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("%s %s with Authorization %q: status %d, want 401", r.Method, r.Pattern, auth, rec.Code)
			}
			if rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: 401 without WWW-Authenticate", r.Method, r.Pattern)
			}
		}
	}
}
