package docker

import "context"

// HasImage reports whether ref is available in the local engine, so that a
// provider can decline a task whose image it lacks instead of failing it.
func (e *Executor) HasImage(ctx context.Context, ref string) bool {
	_, err := e.cli.ImageInspect(ctx, ref)
	return err == nil
}
