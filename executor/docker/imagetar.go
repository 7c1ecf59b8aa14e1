package docker

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// ErrBadImageTar: an image tarball from a requestor was refused before it
// reached the engine (malformed, oversized, more than one image, or
// references that do not match its entries).
var ErrBadImageTar = errors.New("image tarball refused")

// Bounds on a requestor's image tarball, checked before the engine sees it.
const (
	// DefaultMaxImageBytes bounds the sum of the entry sizes of a tarball.
	DefaultMaxImageBytes = 8 << 30
	// maxImageEntries bounds the number of entries of a tarball.
	maxImageEntries = 100_000
	// maxImageMetaBytes bounds manifest.json and index.json.
	maxImageMetaBytes = 1 << 20
	// maxImageLayers bounds the layers of the one image.
	maxImageLayers = 256
)

// imageTarInfo is what checkImageTar learned of a tarball.
type imageTarInfo struct {
	// ConfigDigest is "sha256:<hex>" of the image's config, which is the
	// image ID the engine gives it.
	ConfigDigest string
	// Layers is the number of layers of the image.
	Layers int
	// Bytes is the sum of the entry sizes.
	Bytes int64
}

// manifestEntry is one element of a `docker save` manifest.json.
type manifestEntry struct {
	Config string   `json:"Config"`
	Layers []string `json:"Layers"`
}

// checkImageTar reads a `docker save` tarball from r and checks it: entry
// names are relative and clean, entries are files, directories or links
// that stay inside the archive, the total size is at most maxBytes, and
// manifest.json names exactly one image whose config and layers are
// entries of the archive. It returns what it learned, or an error wrapping
// ErrBadImageTar that says why.
func checkImageTar(r io.Reader, maxBytes int64) (*imageTarInfo, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxImageBytes
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadImageTar, fmt.Sprintf(format, args...))
	}
	tr := tar.NewReader(r)
	files := map[string]bool{}
	var manifest []byte
	info := &imageTarInfo{}
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, bad("not a tar archive: %v", err)
		}
		if n >= maxImageEntries {
			return nil, bad("more than %d entries", maxImageEntries)
		}
		name, err := cleanEntryName(h.Name)
		if err != nil {
			return nil, bad("%v", err)
		}
		if h.Size < 0 || h.Size > maxBytes-info.Bytes {
			return nil, bad("entries exceed %d bytes", maxBytes)
		}
		info.Bytes += h.Size
		switch h.Typeflag {
		case tar.TypeDir:
		case tar.TypeReg:
			files[name] = true
		case tar.TypeSymlink, tar.TypeLink:
			target := h.Linkname
			if h.Typeflag == tar.TypeSymlink && !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			if _, err := cleanEntryName(target); err != nil {
				return nil, bad("link %s -> %s leaves the archive", name, h.Linkname)
			}
			files[name] = true
		default:
			return nil, bad("entry %s has type %q; only files, directories and links are allowed", name, h.Typeflag)
		}
		if name == "manifest.json" {
			if h.Size > maxImageMetaBytes {
				return nil, bad("manifest.json is %d bytes, more than %d", h.Size, maxImageMetaBytes)
			}
			manifest, err = io.ReadAll(tr)
			if err != nil {
				return nil, bad("read manifest.json: %v", err)
			}
		}
	}
	if manifest == nil {
		return nil, bad("no manifest.json: not a `docker save` tarball")
	}
	var entries []manifestEntry
	if err := json.Unmarshal(manifest, &entries); err != nil {
		return nil, bad("manifest.json: %v", err)
	}
	if len(entries) != 1 {
		return nil, bad("manifest.json names %d images; exactly one is allowed", len(entries))
	}
	m := entries[0]
	cfg, err := cleanEntryName(m.Config)
	if err != nil || !files[cfg] {
		return nil, bad("config %q is not an entry of the archive", m.Config)
	}
	digest, err := configDigest(cfg)
	if err != nil {
		return nil, bad("%v", err)
	}
	if len(m.Layers) > maxImageLayers {
		return nil, bad("%d layers, more than %d", len(m.Layers), maxImageLayers)
	}
	for _, l := range m.Layers {
		ln, err := cleanEntryName(l)
		if err != nil || !files[ln] {
			return nil, bad("layer %q is not an entry of the archive", l)
		}
	}
	info.ConfigDigest = digest
	info.Layers = len(m.Layers)
	return info, nil
}

// configDigest derives the image ID from the config entry's name:
// "<hex>.json" (docker save) or "blobs/sha256/<hex>" (OCI layout).
func configDigest(name string) (string, error) {
	hex := strings.TrimSuffix(path.Base(name), ".json")
	if len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", fmt.Errorf("config %q is not named after its sha256", name)
	}
	return "sha256:" + hex, nil
}

// cleanEntryName returns name if it is a clean relative path that stays in
// the archive ("./" prefixes and a trailing "/" allowed).
func cleanEntryName(name string) (string, error) {
	n := strings.TrimSuffix(strings.TrimPrefix(name, "./"), "/")
	switch {
	case n == "" || strings.ContainsRune(n, 0):
		return "", fmt.Errorf("entry name %q is empty or holds NUL", name)
	case path.IsAbs(n):
		return "", fmt.Errorf("entry name %q is absolute", name)
	case path.Clean(n) != n || n == ".." || strings.HasPrefix(n, "../"):
		return "", fmt.Errorf("entry name %q is not clean or leaves the archive", name)
	}
	return n, nil
}

// untagImageTar copies the tarball from r to w without anything that
// names the image: manifest.json loses its RepoTags, the legacy
// repositories file is dropped, and index.json (OCI layout) loses the
// annotations that engines turn into tags. Loading the result can add or
// move no tag. Call it only on a tarball checkImageTar accepted.
func untagImageTar(r io.Reader, w io.Writer) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadImageTar, err)
		}
		name, _ := cleanEntryName(h.Name)
		switch name {
		case "repositories":
			continue
		case "manifest.json", "index.json":
			body, err := io.ReadAll(io.LimitReader(tr, maxImageMetaBytes+1))
			if err != nil {
				return fmt.Errorf("%w: read %s: %v", ErrBadImageTar, name, err)
			}
			if name == "manifest.json" {
				body, err = stripRepoTags(body)
			} else {
				body, err = stripRefAnnotations(body)
			}
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrBadImageTar, name, err)
			}
			h.Size = int64(len(body))
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := tw.Write(body); err != nil {
				return err
			}
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	return tw.Close()
}

// stripRepoTags empties RepoTags in every manifest.json entry, keeping
// every other field as it was.
func stripRepoTags(body []byte) ([]byte, error) {
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal(body, &entries); err != nil {
		return nil, err
	}
	for _, e := range entries {
		delete(e, "RepoTags")
	}
	return json.Marshal(entries)
}

// refAnnotations are the OCI index annotations engines read as image names.
var refAnnotations = []string{"org.opencontainers.image.ref.name", "io.containerd.image.name"}

// stripRefAnnotations removes the name annotations of an OCI index.json
// and of each manifest descriptor in it.
func stripRefAnnotations(body []byte) ([]byte, error) {
	var index map[string]json.RawMessage
	if err := json.Unmarshal(body, &index); err != nil {
		return nil, err
	}
	strip := func(raw json.RawMessage) (json.RawMessage, error) {
		var ann map[string]string
		if err := json.Unmarshal(raw, &ann); err != nil {
			return nil, err
		}
		for _, k := range refAnnotations {
			delete(ann, k)
		}
		return json.Marshal(ann)
	}
	if raw, ok := index["annotations"]; ok {
		out, err := strip(raw)
		if err != nil {
			return nil, err
		}
		index["annotations"] = out
	}
	if raw, ok := index["manifests"]; ok {
		var descs []map[string]json.RawMessage
		if err := json.Unmarshal(raw, &descs); err != nil {
			return nil, err
		}
		for _, d := range descs {
			if a, ok := d["annotations"]; ok {
				out, err := strip(a)
				if err != nil {
					return nil, err
				}
				d["annotations"] = out
			}
		}
		out, err := json.Marshal(descs)
		if err != nil {
			return nil, err
		}
		index["manifests"] = out
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(index); err != nil {
		return nil, err
	}
	return bytes.TrimSpace(buf.Bytes()), nil
}
