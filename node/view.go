package node

import (
	"github.com/offload-project/offload/client"
	"github.com/offload-project/offload/market"
	"github.com/offload-project/offload/market/wire"
)

// view turns the requestor's record into the status users see.
func view(t *market.Task) *client.Task {
	v := &client.Task{
		ID: t.ID, State: string(t.State), Provider: t.Provider, Reason: t.Reason,
		CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, Attempt: t.Attempt, Spec: t.Spec,
		Bids: []client.Bid{}, Executions: []client.Execution{}, Stages: []client.Stage{},
	}
	v.Parent, v.Piece = t.Parent, t.Piece
	if t.Group != nil {
		for _, c := range t.Group.Children {
			v.Children = append(v.Children, client.Child{ID: c.ID, Piece: c.Piece, State: string(c.State),
				Provider: c.Provider, Outputs: c.Outputs, Verdict: c.Verdict})
		}
	}
	if t.State == market.StateFailed || t.State == market.StateCanceled {
		v.Error = t.Reason
	}
	if r := t.Result; r != nil {
		code := r.ExitCode
		v.ExitCode = &code
		v.Stdout, v.Stderr = r.Stdout, r.Stderr
		v.StdoutSize, v.StderrSize = r.StdoutSize, r.StderrSize
		v.Usage = client.Usage(r.Usage)
		v.Price = r.Cost
		for _, st := range r.Stages {
			v.Stages = append(v.Stages, client.Stage{Name: st.Name, ExitCode: st.ExitCode, Stdout: st.Stdout, Stderr: st.Stderr, WallMS: st.WallMS, Usage: client.Usage(st.Usage)})
		}
		v.Outputs = r.Outputs
		if t.Spec.RuntimeOrDefault() == wire.RuntimeBuild && t.State == market.StateCompleted {
			v.Image = r.Outputs // the image tarball, as one file
		}
		if !r.StartedAt.IsZero() {
			s, f := r.StartedAt, r.FinishedAt
			v.StartedAt, v.FinishedAt = &s, &f
		}
		if v.Error == "" && r.Error != "" {
			v.Error = r.Error
		}
	}
	for _, b := range t.Bids {
		v.Bids = append(v.Bids, client.Bid{
			Provider: b.Provider, Attempt: b.Attempt, Price: b.Price, MaxCost: b.MaxCost,
			StartMS: b.StartMS, HasImage: b.HasImage, InputsLocal: b.InputsLocal, Decline: b.Decline, Silent: b.Silent, Outcome: b.Outcome,
		})
	}
	for _, e := range t.Executions {
		x := client.Execution{Provider: e.Provider, Attempt: e.Attempt, State: string(e.State), AwardedAt: e.AwardedAt}
		if !e.FinishedAt.IsZero() {
			f := e.FinishedAt
			x.FinishedAt = &f
		}
		if r := e.Result; r != nil {
			code := r.ExitCode
			x.ExitCode = &code
			x.Error, x.Stdout, x.Stderr = r.Error, r.Stdout, r.Stderr
			u := client.Usage(r.Usage)
			x.Usage = &u
		}
		v.Executions = append(v.Executions, x)
	}
	return v
}
