package market

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/market/wire"
)

// Portable volumes on the requestor side.
//
// The requestor keeps a table of its volumes: name -> CID, size, updated.
// A task's volumes are resolved to their current CIDs when it is first
// announced (so a scheduled task gets the content of its start time, and a
// retry the same content as the first attempt). When the task completes
// with exit code 0 its result carries each volume's new CID; the requestor
// fetches the whole new content from the provider and pins it, and only
// then points the name at it and unpins the old content. Until that swap
// the old CID stays: a volume is never half-updated. A task that fails or
// is canceled leaves its volumes as they were. Two tasks that write the
// same volume at once: the one that completes last wins.

// VolumeRecord is one volume in the requestor's table.
type VolumeRecord struct {
	Name    string    `json:"name"`
	CID     string    `json:"cid"`
	Size    int64     `json:"size"`
	Updated time.Time `json:"updated"`
}

// VolumeStore persists volume records by name. storage.Table[VolumeRecord]
// implements it.
type VolumeStore interface {
	Get(name string) (*VolumeRecord, error)
	Put(name string, v *VolumeRecord) error
	Delete(name string) error
	List() ([]*VolumeRecord, error)
}

// ErrVolumeNotFound is returned for an unknown volume name.
var ErrVolumeNotFound = errors.New("volume not found")

// Volumes lists the requestor's volumes by name.
func (r *Requestor) Volumes() ([]*VolumeRecord, error) {
	if r.cfg.Volumes == nil {
		return nil, nil
	}
	vs, err := r.cfg.Volumes.List()
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	slices.SortFunc(vs, func(a, b *VolumeRecord) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return vs, nil
}

// RemoveVolume forgets a volume and unpins its content (unless another
// volume holds the same content). Tasks already resolved keep their CID.
func (r *Requestor) RemoveVolume(ctx context.Context, name string) (*VolumeRecord, error) {
	if r.cfg.Volumes == nil {
		return nil, fmt.Errorf("%w: %s", ErrVolumeNotFound, name)
	}
	r.volMu.Lock()
	defer r.volMu.Unlock()
	v, err := r.cfg.Volumes.Get(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrVolumeNotFound, name)
	}
	if err := r.cfg.Volumes.Delete(name); err != nil {
		return nil, fmt.Errorf("remove volume %s: %w", name, err)
	}
	r.releaseVolumeContent(ctx, v.CID)
	return v, nil
}

// releaseVolumeContent unpins c unless a volume still points at it. The
// caller holds volMu.
func (r *Requestor) releaseVolumeContent(ctx context.Context, c string) {
	if c == "" || r.cfg.Content == nil {
		return
	}
	vs, err := r.cfg.Volumes.List()
	if err != nil {
		return
	}
	for _, v := range vs {
		if v.CID == c {
			return
		}
	}
	if err := r.cfg.Content.Unpin(ctx, c); err != nil {
		r.log.Debug("unpin old volume content", "cid", c, "err", err)
	}
}

// resolveVolumes fills in the current CID of each volume the spec names
// without one, before the first announcement, and persists it.
func (r *Requestor) resolveVolumes(t *Task) (*Task, error) {
	if t.Attempt > 0 || r.cfg.Volumes == nil || len(t.Spec.Volumes) == 0 {
		return t, nil
	}
	cids := map[string]string{}
	sizes := map[string]int64{}
	for _, v := range t.Spec.Volumes {
		if v.CID != "" {
			continue
		}
		if rec, err := r.cfg.Volumes.Get(v.Name); err == nil {
			cids[v.Name] = rec.CID
			// The volume's content is held here (fetched and pinned when
			// it was last written): declare its size, which bounds what
			// the provider fetches.
			if r.cfg.Content != nil {
				if n, ok := r.cfg.Content.Size(r.ctx, rec.CID); ok {
					sizes[v.Name] = n
				}
			}
		}
	}
	if len(cids) == 0 {
		return t, nil
	}
	return r.update(t.ID, edit([]State{StatePending, StateBidding}, func(t *Task) {
		vols := slices.Clone(t.Spec.Volumes)
		for i := range vols {
			if c, ok := cids[vols[i].Name]; ok && vols[i].CID == "" {
				vols[i].CID = c
				if vols[i].Size == 0 {
					vols[i].Size = sizes[vols[i].Name]
				}
			}
		}
		t.Spec.Volumes = vols
	}))
}

// fetchResultContent makes a completed result's content local: its
// outputs, then each volume's new content, and only then swaps the volumes
// to it.
func (r *Requestor) fetchResultContent(t *Task, provider peer.ID) error {
	if c := t.Result.Outputs; c != "" {
		if err := r.cfg.Content.FetchPin(r.ctx, c, provider, "outputs:"+t.ID); err != nil {
			return err
		}
	}
	if len(t.Result.Volumes) == 0 || r.cfg.Volumes == nil {
		return nil
	}
	var news []wire.VolumeResult
	for _, v := range t.Result.Volumes {
		if !slices.ContainsFunc(t.Spec.Volumes, func(sv wire.Volume) bool { return sv.Name == v.Name }) {
			r.log.Warn("result names a volume the task did not have", "task", t.ID, "volume", v.Name)
			continue
		}
		if err := wire.ValidCID(v.CID); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if err := r.cfg.Content.FetchPin(r.ctx, v.CID, provider, "volume:"+v.Name); err != nil {
			return fmt.Errorf("fetch volume %s (%s): %w", v.Name, v.CID, err)
		}
		news = append(news, v)
	}
	// Every new content is local and pinned: swap the names now.
	r.volMu.Lock()
	defer r.volMu.Unlock()
	now := time.Now().UTC()
	for _, v := range news {
		old, _ := r.cfg.Volumes.Get(v.Name)
		if err := r.cfg.Volumes.Put(v.Name, &VolumeRecord{Name: v.Name, CID: v.CID, Size: v.Size, Updated: now}); err != nil {
			return fmt.Errorf("record volume %s: %w", v.Name, err)
		}
		if old != nil && old.CID != v.CID {
			r.releaseVolumeContent(r.ctx, old.CID)
		}
	}
	return nil
}
