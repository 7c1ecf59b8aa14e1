package docker

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// TestRewriteConfigBothLayouts: the built image's config replaces the
// engine's in a legacy `docker save` tarball and in the OCI layout newer
// engines save, and the result passes the checks a provider's LoadImage
// makes.
func TestRewriteConfigBothLayouts(t *testing.T) {
	layer := []byte("layer bytes")
	oldConf := []byte(`{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh","-c","the last RUN"],"Labels":{"offload.task":"x"}},"container":"abc","container_config":{"Cmd":["x"]},"rootfs":{"type":"layers","diff_ids":["sha256:00"]},"history":[{"created_by":"x"}]}`)
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	layouts := map[string][][2]string{
		"legacy": {
			{"repositories", `{"x":{"y":"z"}}`},
			{sum(layer) + "/layer.tar", string(layer)},
			{sum(layer) + "/json", `{"id":"x"}`},
			{sum(oldConf) + ".json", string(oldConf)},
			{"manifest.json", `[{"Config":"` + sum(oldConf) + `.json","RepoTags":["a:b"],"Layers":["` + sum(layer) + `/layer.tar"]}]`},
		},
		"oci": {
			{"blobs/sha256/" + sum(layer), string(layer)},
			{"blobs/sha256/" + sum(oldConf), string(oldConf)},
			{"index.json", `{"schemaVersion":2,"manifests":[]}`},
			{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`},
			{"manifest.json", `[{"Config":"blobs/sha256/` + sum(oldConf) + `","RepoTags":null,"Layers":["blobs/sha256/` + sum(layer) + `"]}]`},
		},
	}
	for name, files := range layouts {
		t.Run(name, func(t *testing.T) {
			var in bytes.Buffer
			tw := tar.NewWriter(&in)
			for _, f := range files {
				tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg})
				tw.Write([]byte(f[1]))
			}
			tw.Close()
			var out bytes.Buffer
			cfg := imageConfig{Cmd: []string{"cat", "/msg"}, User: "1000", Labels: map[string]string{"k": "v"}}
			if err := rewriteConfig(&in, &out, cfg); err != nil {
				t.Fatal(err)
			}
			info, err := checkImageTar(bytes.NewReader(out.Bytes()), 0)
			if err != nil {
				t.Fatalf("the rewritten tarball fails the load checks: %v", err)
			}
			got := map[string][]byte{}
			tr := tar.NewReader(&out)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got[h.Name], _ = io.ReadAll(tr)
			}
			for _, gone := range []string{"repositories", "index.json", "oci-layout"} {
				if _, ok := got[gone]; ok {
					t.Errorf("%s kept", gone)
				}
			}
			var conf map[string]json.RawMessage
			var found bool
			for n, b := range got {
				if "sha256:"+sum(b) == info.ConfigDigest && (strings.HasSuffix(n, ".json") || strings.HasPrefix(n, "blobs/")) {
					found = true
					json.Unmarshal(b, &conf)
				}
			}
			if !found {
				t.Fatalf("no entry holds the config %s", info.ConfigDigest)
			}
			var c imageConfig
			json.Unmarshal(conf["config"], &c)
			if strings.Join(c.Cmd, " ") != "cat /msg" || c.User != "1000" || c.Labels["k"] != "v" || c.Labels["offload.task"] != "" {
				t.Errorf("config %s", conf["config"])
			}
			if conf["container_config"] != nil || conf["container"] != nil || conf["rootfs"] == nil || conf["history"] == nil {
				t.Errorf("config keys: %v", conf)
			}
			if !bytes.Equal(got[files[0][0]], []byte(files[0][1])) && name == "oci" {
				t.Errorf("the layer changed")
			}
		})
	}
}
