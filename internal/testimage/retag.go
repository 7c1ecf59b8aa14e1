package testimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

// RetagImageTar returns the `docker save` tarball data with the RepoTags of
// its (first) manifest.json entry set to tags, as a hostile requestor would
// write it to claim names that belong to other images.
func RetagImageTar(tb testing.TB, data []byte, tags []string) []byte {
	tb.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatalf("read image tarball: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			tb.Fatalf("read image tarball: %v", err)
		}
		if h.Name == "manifest.json" {
			var m []map[string]any
			if err := json.Unmarshal(body, &m); err != nil || len(m) == 0 {
				tb.Fatalf("manifest.json: %v (%d entries)", err, len(m))
			}
			m[0]["RepoTags"] = tags
			body, _ = json.Marshal(m)
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}
