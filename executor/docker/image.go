package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/moby/moby/client"
)

// LoadImage loads a `docker save` tarball from a requestor into the engine
// and returns the loaded image's ID (sha256:...), which runs it without any
// registry or tag. The tarball is checked first (checkImageTar: one image,
// clean entry names, bounded size, config and layers present) and loaded
// without the names it carries (untagImageTar), so it can never add or move
// a tag that an operator or another tenant runs by name. A file that is
// not such a tarball gives an error wrapping ErrBadImageTar and loads
// nothing.
func (e *Executor) LoadImage(ctx context.Context, tarPath string) (string, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return "", fmt.Errorf("docker load: %w", err)
	}
	defer f.Close()
	info, err := checkImageTar(f, e.cfg.maxImageBytes)
	if err != nil {
		return "", fmt.Errorf("docker load: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("docker load: %w", err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(untagImageTar(f, pw)) }()
	defer pr.Close()
	res, err := e.cli.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		return "", e.classify("docker load", err)
	}
	defer res.Close()
	var loaded []string
	dec := json.NewDecoder(res)
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", fmt.Errorf("docker load: read engine answer: %w", err)
		}
		if msg.Error != "" {
			return "", fmt.Errorf("docker load: not a docker image tarball: %s", msg.Error)
		}
		for _, line := range strings.Split(msg.Stream, "\n") {
			if id, ok := strings.CutPrefix(line, "Loaded image ID: "); ok {
				loaded = append(loaded, strings.TrimSpace(id))
			} else if ref, ok := strings.CutPrefix(line, "Loaded image: "); ok {
				loaded = append(loaded, strings.TrimSpace(ref))
			}
		}
	}
	if len(loaded) == 0 {
		return "", errors.New("docker load: the tarball held no image")
	}
	insp, err := e.cli.ImageInspect(ctx, info.ConfigDigest)
	if err != nil {
		return "", fmt.Errorf("docker load: the engine loaded %v, not the image %s the manifest names: %w",
			loaded, info.ConfigDigest, ErrBadImageTar)
	}
	return insp.ID, nil
}

// SaveImage streams the `docker save` tarball of a local image. The caller
// closes the reader.
func (e *Executor) SaveImage(ctx context.Context, ref string) (io.ReadCloser, error) {
	if _, err := e.cli.ImageInspect(ctx, ref); err != nil {
		return nil, fmt.Errorf("docker save: image %q is not available locally: %w", ref, err)
	}
	rc, err := e.cli.ImageSave(ctx, []string{ref})
	if err != nil {
		return nil, e.classify("docker save "+ref, err)
	}
	return rc, nil
}
