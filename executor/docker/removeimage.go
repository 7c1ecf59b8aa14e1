package docker

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// ErrImageInUse marks an image RemoveImage left because a container (of
// a task or a build) still uses it.
var ErrImageInUse = errors.New("image in use by a container")

// RemoveImage removes an image that LoadImage loaded from a requestor's
// tarball, by the ID LoadImage returned, so that a provider's cache of
// images by CID can give the disk back. It removes only an image nothing
// else names: one with a tag or a repository digest is the operator's (a
// tarball of the same content loads as the same ID) and is left as it is,
// without an error. An image already gone is not an error; one a
// container uses is not removed and gives an error wrapping ErrImageInUse
// (nothing is ever forced).
func (e *Executor) RemoveImage(ctx context.Context, ref string) error {
	insp, err := e.cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return e.classify("remove image "+ref, err)
	}
	if len(insp.RepoTags) > 0 || len(insp.RepoDigests) > 0 {
		e.log.Debug("image kept: it has a name of its own", "image", shortID(insp.ID), "tags", insp.RepoTags)
		return nil
	}
	_, err = e.cli.ImageRemove(ctx, insp.ID, client.ImageRemoveOptions{PruneChildren: true})
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
		return nil
	case cerrdefs.IsConflict(err):
		return fmt.Errorf("remove image %s: %w: %w", shortID(insp.ID), ErrImageInUse, err)
	default:
		return e.classify("remove image "+shortID(insp.ID), err)
	}
}

// ImageSize is the size the engine reports for a local image (its
// layers' bytes on disk), so that a provider can account for an image an
// earlier process loaded.
func (e *Executor) ImageSize(ctx context.Context, ref string) (int64, error) {
	insp, err := e.cli.ImageInspect(ctx, ref)
	if err != nil {
		return 0, e.classify("inspect image "+ref, err)
	}
	return insp.Size, nil
}

// RemoveImage removes a base image loaded by CID (see
// Executor.RemoveImage).
func (b *Builder) RemoveImage(ctx context.Context, ref string) error {
	return b.e.RemoveImage(ctx, ref)
}

// ImageSize is the engine's size of a local image (see
// Executor.ImageSize).
func (b *Builder) ImageSize(ctx context.Context, ref string) (int64, error) {
	return b.e.ImageSize(ctx, ref)
}
