package docker

import (
	"context"
	"errors"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Container is a container this executor created, as found on the engine.
type Container struct {
	ID      string
	TaskID  string
	Image   string
	State   string // engine state: "created", "running", "exited", ...
	Created time.Time
}

// FindRunning lists every container labeled offload.managed=true, running or
// not, so that a provider restarting after a crash can reattach to or clean
// up the work it left behind.
func (e *Executor) FindRunning(ctx context.Context) ([]Container, error) {
	return e.list(ctx, client.Filters{}.Add("label", LabelManaged+"=true"))
}

// RemoveTask kills and removes every container of taskID. It is not an error
// when there is none.
func (e *Executor) RemoveTask(ctx context.Context, taskID string) error {
	cs, err := e.list(ctx, client.Filters{}.Add("label", LabelManaged+"=true", LabelTask+"="+taskID))
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range cs {
		if _, err := e.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s of task %s: %w", shortID(c.ID), taskID, err))
		}
	}
	return errors.Join(errs...)
}

func (e *Executor) list(ctx context.Context, f client.Filters) ([]Container, error) {
	res, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, e.classify("docker list containers", err)
	}
	out := make([]Container, 0, len(res.Items))
	for _, s := range res.Items {
		out = append(out, Container{
			ID:      s.ID,
			TaskID:  s.Labels[LabelTask],
			Image:   s.Image,
			State:   string(s.State),
			Created: time.Unix(s.Created, 0),
		})
	}
	return out, nil
}
