package market

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/market/wire"
)

// runStages runs a task's command, or its stages in order in the same
// sandbox (same mounts, limits and /work), within one overall timeout. It
// returns the last run's result with usage summed over the stages.
func runStages(ctx context.Context, ex executor.Executor, spec wire.TaskSpec, pr *prepared) (*executor.Result, []wire.StageResult, error) {
	if len(spec.Stages) == 0 {
		out, err := ex.Run(ctx, pr.spec)
		return out, nil, err
	}
	timeout := pr.spec.Timeout
	if timeout <= 0 {
		timeout = executor.DefaultTimeout
	}
	deadline := time.Now().Add(timeout)
	var total *executor.Result
	var stages []wire.StageResult
	for _, st := range spec.Stages {
		s := pr.spec
		s.Cmd = st.Cmd
		if len(st.Env) > 0 {
			env := map[string]string{}
			for k, v := range pr.spec.Env {
				env[k] = v
			}
			for k, v := range st.Env {
				env[k] = v
			}
			s.Env = env
		}
		s.Timeout = time.Until(deadline)
		if s.Timeout <= 0 {
			return total, stages, fmt.Errorf("stage %s: %w after %s (the whole task's limit)", st.Name, executor.ErrTimeout, timeout)
		}
		out, err := ex.Run(ctx, s)
		sr := wire.StageResult{Name: st.Name, ExitCode: -1}
		if out != nil {
			sr.ExitCode, sr.Stdout, sr.Stderr, sr.WallMS = out.ExitCode, string(out.Stdout), string(out.Stderr), out.Usage.WallMS
			sr.Usage = wire.Usage(out.Usage)
			total = addUsage(total, out)
		}
		if err != nil {
			sr.Error = err.Error()
			stages = append(stages, sr)
			if errors.Is(err, executor.ErrTimeout) {
				err = fmt.Errorf("stage %s: %w", st.Name, err)
			}
			return total, stages, err
		}
		stages = append(stages, sr)
		if out.ExitCode != 0 && !st.ContinueOnError {
			break
		}
	}
	return total, stages, nil
}

// addUsage folds one stage's result into the task's: the latest stage's
// exit code and output, the sum of times, the peak of memory.
func addUsage(total, out *executor.Result) *executor.Result {
	if total == nil {
		c := *out
		return &c
	}
	started := total.StartedAt
	usage := total.Usage
	*total = *out
	total.StartedAt = started
	total.Usage.WallMS += usage.WallMS
	total.Usage.CPUMS += usage.CPUMS
	total.Usage.MaxRSSBytes = max(total.Usage.MaxRSSBytes, usage.MaxRSSBytes)
	return total
}
