package docker

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

const cfgHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

type entry struct {
	name, body, link string
	typ              byte
}

func makeTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: 0o644}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func goodEntries(tags string) []entry {
	return []entry{
		{name: "layer1/", typ: tar.TypeDir},
		{name: "layer1/layer.tar", body: "layer"},
		{name: cfgHex + ".json", body: "{}"},
		{name: "manifest.json", body: `[{"Config":"` + cfgHex + `.json","RepoTags":` + tags + `,"Layers":["layer1/layer.tar"]}]`},
		{name: "repositories", body: `{"victim":{"latest":"` + cfgHex + `"}}`},
	}
}

func TestCheckImageTar(t *testing.T) {
	good := goodEntries(`["victim:latest"]`)
	info, err := checkImageTar(bytes.NewReader(makeTar(t, good...)), 0)
	if err != nil {
		t.Fatalf("good tarball refused: %v", err)
	}
	if info.ConfigDigest != "sha256:"+cfgHex || info.Layers != 1 {
		t.Fatalf("info = %+v", info)
	}
	replace := func(i int, e entry) []entry {
		out := append([]entry(nil), good...)
		out[i] = e
		return out
	}
	cases := []struct {
		name    string
		entries []entry
		limit   int64
		want    string
	}{
		{"absolute name", replace(1, entry{name: "/etc/passwd", body: "x"}), 0, "absolute"},
		{"dotdot name", replace(1, entry{name: "../x", body: "x"}), 0, "leaves the archive"},
		{"symlink out", replace(1, entry{name: "layer1/layer.tar", typ: tar.TypeSymlink, link: "../../etc/shadow"}), 0, "leaves the archive"},
		{"device", replace(1, entry{name: "layer1/dev", typ: tar.TypeChar}), 0, "only files"},
		{"fifo", replace(1, entry{name: "layer1/fifo", typ: tar.TypeFifo}), 0, "only files"},
		{"missing layer", good[2:], 0, "layer \"layer1/layer.tar\" is not an entry"},
		{"missing config", append(append([]entry(nil), good[:2]...), good[3:]...), 0, "config"},
		{"no manifest", good[:3], 0, "no manifest.json"},
		{"two images", replace(3, entry{name: "manifest.json", body: `[{"Config":"` + cfgHex + `.json","Layers":[]},{"Config":"` + cfgHex + `.json","Layers":[]}]`}), 0, "exactly one"},
		{"config not a digest", replace(2, entry{name: "evil.json", body: "{}"}), 0, "config"},
		{"bad json", replace(3, entry{name: "manifest.json", body: `[{`}), 0, "manifest.json"},
		{"too big", good, 10, "exceed 10 bytes"},
		{"not a tar", nil, 0, "not a tar archive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := makeTar(t, c.entries...)
			if c.entries == nil {
				data = []byte("this is not a tar archive at all, not even close......")
			}
			_, err := checkImageTar(bytes.NewReader(data), c.limit)
			if !errors.Is(err, ErrBadImageTar) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrBadImageTar saying %q", err, c.want)
			}
		})
	}
}

func TestUntagImageTarRemovesEveryName(t *testing.T) {
	entries := append(goodEntries(`["victim:latest","other:1"]`), entry{name: "index.json",
		body: `{"schemaVersion":2,"annotations":{"org.opencontainers.image.ref.name":"victim"},"manifests":[{"digest":"sha256:` + cfgHex +
			`","annotations":{"io.containerd.image.name":"docker.io/library/victim:latest","org.opencontainers.image.ref.name":"latest","keep":"me"}}]}`})
	var out bytes.Buffer
	if err := untagImageTar(bytes.NewReader(makeTar(t, entries...)), &out); err != nil {
		t.Fatal(err)
	}
	if _, err := checkImageTar(bytes.NewReader(out.Bytes()), 0); err != nil {
		t.Fatalf("the untagged tarball no longer checks: %v", err)
	}
	tr := tar.NewReader(&out)
	seen := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		seen[h.Name] = string(b)
	}
	if _, ok := seen["repositories"]; ok {
		t.Error("repositories file kept")
	}
	if seen["layer1/layer.tar"] != "layer" {
		t.Error("layer content changed")
	}
	var m []map[string]any
	if err := json.Unmarshal([]byte(seen["manifest.json"]), &m); err != nil || len(m) != 1 {
		t.Fatalf("manifest.json = %s (%v)", seen["manifest.json"], err)
	}
	if _, ok := m[0]["RepoTags"]; ok || m[0]["Config"] != cfgHex+".json" {
		t.Errorf("manifest.json = %s", seen["manifest.json"])
	}
	idx := seen["index.json"]
	if strings.Contains(idx, "victim") || strings.Contains(idx, "ref.name") || !strings.Contains(idx, `"keep":"me"`) {
		t.Errorf("index.json = %s", idx)
	}
}

// FuzzCheckImageTar feeds arbitrary bytes to the tarball checker and, when
// it accepts them, to the untagger: neither may panic, and an accepted
// tarball untags into one that still checks and names no tag.
func FuzzCheckImageTar(f *testing.F) {
	f.Add(makeTar(f, goodEntries(`["victim:latest"]`)...))
	f.Add(makeTar(f, entry{name: "manifest.json", body: `[{"Config":"../x","Layers":["/etc/passwd"]}]`}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := checkImageTar(bytes.NewReader(data), 1<<20)
		if err != nil {
			if !errors.Is(err, ErrBadImageTar) {
				t.Fatalf("error does not wrap ErrBadImageTar: %v", err)
			}
			return
		}
		var out bytes.Buffer
		if err := untagImageTar(bytes.NewReader(data), &out); err != nil {
			return // a tarball whose metadata is not an object list is refused here
		}
		info2, err := checkImageTar(bytes.NewReader(out.Bytes()), 1<<20)
		if err != nil || info2.ConfigDigest != info.ConfigDigest {
			t.Fatalf("untagged tarball: %+v, %v (was %+v)", info2, err, info)
		}
		tr := tar.NewReader(&out)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			b, _ := io.ReadAll(tr)
			if name, _ := cleanEntryName(h.Name); name == "repositories" ||
				(name == "manifest.json" && strings.Contains(string(b), `"RepoTags"`)) {
				t.Fatalf("%s still names the image: %s", name, b)
			}
		}
	})
}
