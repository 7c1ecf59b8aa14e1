package market

import (
	"context"
	"fmt"
	"slices"

	"github.com/offload-project/offload/market/wire"
)

// declareSizes fills in the declared size of each piece of content the
// spec names by CID (its image, inputs, subtasks' inputs and volumes)
// whose whole DAG this node holds, so that providers bound their fetches
// by it. A size the user gave is kept unless it is smaller than the
// content held here: such a task could only fail on every provider, and
// is refused with an error wrapping wire.ErrInvalid. The spec's slices are
// copied before they are changed.
func (r *Requestor) declareSizes(ctx context.Context, spec *wire.TaskSpec) error {
	if r.cfg.Content == nil {
		return nil
	}
	if spec.ImageIsCID() {
		if err := r.declare(ctx, "image "+spec.Image, spec.Image, &spec.ImageSize); err != nil {
			return err
		}
	}
	declareInputs := func(in []wire.Input, where string) ([]wire.Input, error) {
		in = slices.Clone(in)
		for i := range in {
			if err := r.declare(ctx, fmt.Sprintf("%sinput %s for %s", where, in[i].CID, in[i].Path), in[i].CID, &in[i].Size); err != nil {
				return nil, err
			}
		}
		return in, nil
	}
	var err error
	if spec.Inputs, err = declareInputs(spec.Inputs, ""); err != nil {
		return err
	}
	spec.Subtasks = slices.Clone(spec.Subtasks)
	for i := range spec.Subtasks {
		if spec.Subtasks[i].Inputs, err = declareInputs(spec.Subtasks[i].Inputs, fmt.Sprintf("subtask %d: ", i)); err != nil {
			return err
		}
	}
	spec.Volumes = slices.Clone(spec.Volumes)
	for i, v := range spec.Volumes {
		if v.CID == "" {
			continue // resolved (and sized) before the first announcement
		}
		if err := r.declare(ctx, fmt.Sprintf("volume %s (%s)", v.Name, v.CID), v.CID, &spec.Volumes[i].Size); err != nil {
			return err
		}
	}
	return nil
}

// declare sets *size to the size of c's DAG when this node holds all of
// it and *size is unset, and refuses a declared size below it.
func (r *Requestor) declare(ctx context.Context, what, c string, size *int64) error {
	held, ok := r.cfg.Content.Size(ctx, c)
	switch {
	case !ok:
		return nil
	case *size == 0:
		*size = held
	case *size < held:
		return fmt.Errorf("%w: %s: declared size %d bytes is smaller than the %d bytes of its DAG held here "+
			"(every provider would refuse it; declare at least %d, or leave the size out to have it filled in)",
			wire.ErrInvalid, what, *size, held, held)
	}
	return nil
}
