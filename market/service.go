package market

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/offload-project/offload/executor"
	"github.com/offload-project/offload/internal/safefs"
	"github.com/offload-project/offload/market/wire"
	"github.com/offload-project/offload/p2p/stream"
)

// Services on the provider side.
//
// A service task (wire.TaskSpec.Service) runs through the executor's
// optional executor.Service interface instead of Run: the provider starts
// it, keeps its handle in a registry while it lives, and stops it at its
// timeout (it then completes with exit code 0: reaching its timeout is how
// a service ends), on cancel, or when the provider closes. The registry
// answers ProtoTunnel and ProtoExec streams, but only from the requestor
// the task was awarded by: anyone else is refused with a reason.
//
// Each service joins an internal network named from this provider, its
// requestor and its namespace (or, without one, its task), so requestors
// never share a network and a requestor's services of one namespace reach
// each other by task name (aliases) and id.

// tunnelDialTimeout bounds dialing a service's port for a tunnel.
const tunnelDialTimeout = 5 * time.Second

// liveRegistry holds the services running on this provider and the
// tunnel and exec handlers working on them.
type liveRegistry struct {
	once   sync.Once
	mu     sync.Mutex
	byKey  map[string]*liveService
	closed bool
	// handlers counts tunnel and exec stream handlers in progress; close
	// waits for them.
	handlers sync.WaitGroup
}

// liveService is one running service.
type liveService struct {
	rec *ExecRecord
	// h is set before ready is closed; the requestor may learn that the
	// task runs a moment before its service has started.
	h     executor.ServiceHandle
	ready chan struct{}
	// ctx ends when the service stops; tunnels and execs end with it.
	ctx    context.Context
	cancel context.CancelFunc
}

func (l *liveRegistry) init() {
	l.once.Do(func() { l.byKey = map[string]*liveService{} })
}

// begin counts one handler in, unless the registry closed.
func (l *liveRegistry) begin() bool {
	l.init()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.handlers.Add(1)
	return true
}

// add registers a service about to start; started makes it usable.
func (l *liveRegistry) add(rec *ExecRecord) *liveService {
	l.init()
	ctx, cancel := context.WithCancel(context.Background())
	ls := &liveService{rec: rec, ready: make(chan struct{}), ctx: ctx, cancel: cancel}
	l.mu.Lock()
	l.byKey[rec.Key] = ls
	if l.closed {
		cancel()
	}
	l.mu.Unlock()
	return ls
}

// started makes a registered service usable by tunnels and execs.
func (ls *liveService) started(h executor.ServiceHandle) {
	ls.h = h
	close(ls.ready)
}

// wait waits until the service started; false when it stopped first or
// did not start in time.
func (ls *liveService) wait() bool {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	select {
	case <-ls.ready:
		return ls.ctx.Err() == nil
	case <-ls.ctx.Done():
	case <-t.C:
	}
	return false
}

// remove forgets a service and ends its tunnels and execs.
func (l *liveRegistry) remove(key string) {
	l.init()
	l.mu.Lock()
	ls := l.byKey[key]
	delete(l.byKey, key)
	l.mu.Unlock()
	if ls != nil {
		ls.cancel()
	}
}

// lookup finds the running service key of requestor from, or says why
// there is none. The reason is the same whether the task does not exist
// or belongs to another peer: a stranger learns nothing.
func (l *liveRegistry) lookup(from peer.ID, task string, attempt int) (*liveService, string) {
	l.init()
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.byKey[execKey(from.String(), task, attempt)]
	if ls == nil || ls.rec.Requestor != from.String() {
		return nil, fmt.Sprintf("task %s (attempt %d) is not a service of yours running here", task, attempt)
	}
	return ls, ""
}

// close ends every tunnel and exec and waits for their handlers.
func (l *liveRegistry) close() {
	l.init()
	l.mu.Lock()
	l.closed = true
	for _, ls := range l.byKey {
		ls.cancel()
	}
	l.mu.Unlock()
	l.handlers.Wait()
}

// startServices cleans up services a previous process left behind,
// and registers the tunnel and exec protocols. Start calls it before taking
// awards.
func (p *Provider) startServices() {
	p.live.init()
	p.reapServices()
	p.h.SetStreamHandler(wire.ProtoTunnel, p.handleTunnel)
	p.h.SetStreamHandler(wire.ProtoExec, p.handleExec)
}

// closeServices stops answering tunnels and execs and ends those open.
// The services themselves stop with their executions (Close cancels them).
func (p *Provider) closeServices() {
	p.h.RemoveStreamHandler(wire.ProtoTunnel)
	p.h.RemoveStreamHandler(wire.ProtoExec)
	p.live.close()
}

// networkRemover is implemented by executors that create service networks.
type networkRemover interface {
	RemoveNetwork(ctx context.Context, name string) error
}

// reapServices removes the networks of services that were running when
// this provider last stopped without stopping them (a crash); Start has
// already removed their containers (removeLeftovers).
func (p *Provider) reapServices() {
	recs, err := p.store.List()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, time.Minute)
	defer cancel()
	for _, rec := range recs {
		if !rec.Spec.Service || rec.State.IsFinal() {
			continue
		}
		if r, ok := p.executors[rec.Spec.RuntimeOrDefault()].(networkRemover); ok {
			_ = r.RemoveNetwork(ctx, p.networkName(rec))
		}
	}
}

// networkName names the internal network of a service: one per provider,
// requestor and namespace; a service without a namespace gets its own.
func (p *Provider) networkName(rec *ExecRecord) string {
	ns := "task:" + rec.TaskID
	if rec.Spec.Namespace != "" {
		ns = "ns:" + rec.Spec.Namespace
	}
	sum := sha256.Sum256([]byte(p.h.ID().String() + "\n" + rec.Requestor + "\n" + ns))
	return "offload-" + hex.EncodeToString(sum[:8])
}

// serviceAliases are the names other services of the namespace reach a
// service by: its task id, and its name when that is a valid host name.
func serviceAliases(rec *ExecRecord) []string {
	out := []string{rec.TaskID}
	if n := rec.Spec.Name; n != "" && wire.ValidName(n) == nil && n != rec.TaskID {
		out = append(out, n)
	}
	return out
}

// serviceDecline says why this provider cannot run req as a service ("" when
// it can, or when req is no service).
func serviceDecline(ex executor.Executor, req wire.Requirements) string {
	if !req.Service {
		return ""
	}
	if _, ok := ex.(executor.Service); !ok {
		return fmt.Sprintf("the %s executor cannot run services", ex.Name())
	}
	return ""
}

// runWorkload runs an execution's workload: a service through
// executor.Service, anything else through its stages; then, when it exited
// 0, adds its volumes' new content to res.
func (p *Provider) runWorkload(ctx context.Context, ex executor.Executor, rec *ExecRecord, pr *prepared, res *wire.Result) (*executor.Result, []wire.StageResult, error) {
	var (
		out    *executor.Result
		stages []wire.StageResult
		err    error
	)
	if rec.Spec.Service {
		out, err = p.runService(ctx, ex, rec, pr)
	} else {
		out, stages, err = runStages(ctx, ex, rec.Spec, pr)
	}
	if err == nil && out != nil && out.ExitCode == 0 && len(pr.volumes) > 0 {
		res.Volumes, err = p.collectVolumes(ctx, rec, pr)
	}
	return out, stages, err
}

// runService starts the service, keeps it reachable until its timeout,
// its exit or ctx's end, then stops it.
func (p *Provider) runService(ctx context.Context, ex executor.Executor, rec *ExecRecord, pr *prepared) (*executor.Result, error) {
	svc, ok := ex.(executor.Service)
	if !ok {
		return nil, fmt.Errorf("the %s executor cannot run services: %w", ex.Name(), executor.ErrInvalidSpec)
	}
	timeout := pr.spec.Timeout
	if timeout <= 0 {
		timeout = DefaultTaskTimeout
	}
	ls := p.live.add(rec)
	h, err := svc.StartService(ctx, executor.ServiceSpec{
		Spec: pr.spec, Network: p.networkName(rec), Aliases: serviceAliases(rec), Ports: rec.Spec.Ports,
	})
	if err != nil {
		p.live.remove(rec.Key)
		return nil, err
	}
	ls.started(h)
	p.log.Info("service started", "task", rec.TaskID, "ports", rec.Spec.Ports, "timeout", timeout)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	atTimeout := false
	select {
	case <-h.Done():
	case <-timer.C:
		atTimeout = true
	case <-ctx.Done():
	}
	p.live.remove(rec.Key)
	out, err := h.Stop()
	switch {
	case ctx.Err() != nil:
		return out, fmt.Errorf("service stopped: %w", context.Cause(ctx))
	case err != nil:
		return out, err
	case atTimeout && out != nil:
		// Reaching its timeout is how a service ends.
		out.ExitCode = 0
	}
	return out, nil
}

// volumeMount is one volume laid out for a run.
type volumeMount struct {
	vol wire.Volume
	dir string
}

// prepareVolumes fetches each volume's content (or makes an empty
// directory for a new one) and mounts it writable. A fetched volume is the
// requestor's tree: it is opened up for the task with safefs, which never
// follows its links.
func (p *Provider) prepareVolumes(ctx context.Context, rec *ExecRecord, pr *prepared, from peer.ID) error {
	for i, v := range rec.Spec.Volumes {
		if p.cfg.Content == nil {
			return errors.New("this provider has no content store for volumes")
		}
		dir := filepath.Join(pr.rwDir, "volumes", fmt.Sprint(i))
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			return fmt.Errorf("create volumes dir: %w", err)
		}
		if v.CID == "" {
			if err := os.Mkdir(dir, 0o777); err != nil {
				return fmt.Errorf("create volume %s: %w", v.Name, err)
			}
		} else {
			if err := p.fetchTo(ctx, fmt.Sprintf("volume %s (%s)", v.Name, v.CID), v.CID, v.Size, dir, from); err != nil {
				return err
			}
			if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
				return fmt.Errorf("%w: volume %s (%s) is not a directory", errNotContent, v.Name, v.CID)
			}
		}
		// The task may run as any user: let it write its volume.
		if err := safefs.Chmod(dir, 0o777, 0o666); err != nil {
			return fmt.Errorf("%w: volume %s (%s): %w", errNotContent, v.Name, v.CID, err)
		}
		pr.spec.Mounts = append(pr.spec.Mounts, executor.Mount{Source: dir, Target: v.Path})
		pr.volumes = append(pr.volumes, volumeMount{vol: v, dir: dir})
	}
	return nil
}

// collectVolumes adds each volume's directory after the run and returns
// the new CIDs; they stay pinned here until the requestor fetched them
// (released OutputsTTL after delivery). The task wrote the volume: it is
// added where it lies by ContentStore.AddDir (never through a symlink,
// refusing hard links, devices, fifos and sockets), each volume bounded by
// OutputsQuota.
func (p *Provider) collectVolumes(ctx context.Context, rec *ExecRecord, pr *prepared) ([]wire.VolumeResult, error) {
	var out []wire.VolumeResult
	for _, vm := range pr.volumes {
		// Added where it lies: AddDir reads the task's tree beneath its
		// root without following links and stops at the quota.
		c, err := p.cfg.Content.AddDir(ctx, vm.dir, "volume:"+rec.Key+":"+vm.vol.Name, p.cfg.OutputsQuota)
		if errors.Is(err, ErrOverQuota) {
			return out, fmt.Errorf("volume %s is over this provider's quota of %d bytes (%w)", vm.vol.Name, p.cfg.OutputsQuota, err)
		}
		if err != nil {
			return out, fmt.Errorf("add volume %s: %w", vm.vol.Name, err)
		}
		size, err := safefs.Size(vm.dir)
		if err != nil {
			return out, fmt.Errorf("size volume %s: %w", vm.vol.Name, err)
		}
		out = append(out, wire.VolumeResult{Name: vm.vol.Name, CID: c, Size: size})
	}
	return out, nil
}

// readLiveRequest reads the first message of a tunnel or exec stream and
// finds the caller's service. It answers nothing: the caller replies.
func (p *Provider) readLiveRequest(s network.Stream, br *bufio.Reader, max int, v interface{ Validate() error }) error {
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	body, err := stream.ReadFrame(br, max)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %v", wire.ErrInvalid, err)
	}
	return v.Validate()
}

// handleTunnel connects one stream to a port of the caller's service.
func (p *Provider) handleTunnel(s network.Stream) {
	if !p.live.begin() {
		s.Reset()
		return
	}
	defer p.live.handlers.Done()
	from := s.Conn().RemotePeer()
	if !p.streamLimit.Allow(from) {
		s.Reset()
		return
	}
	br := bufio.NewReader(s)
	var req wire.TunnelRequest
	if err := p.readLiveRequest(s, br, wire.MaxTunnelRequestSize, &req); err != nil {
		p.log.Debug("bad tunnel request", "peer", from, "err", err)
		_ = stream.WriteMsg(s, &wire.TunnelReply{Reason: err.Error()})
		s.Close()
		return
	}
	refuse := func(why string) {
		p.log.Debug("tunnel refused", "peer", from, "task", req.TaskID, "reason", why)
		_ = stream.WriteMsg(s, &wire.TunnelReply{Reason: why})
		s.Close()
	}
	ls, why := p.live.lookup(from, req.TaskID, req.Attempt)
	if ls == nil || !ls.wait() {
		if why == "" {
			why = fmt.Sprintf("task %s stopped", req.TaskID)
		}
		refuse(why)
		return
	}
	ctx, cancel := context.WithTimeout(ls.ctx, tunnelDialTimeout)
	addr, err := ls.h.Addr(ctx, req.Port)
	var conn net.Conn
	if err == nil {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	cancel()
	if err != nil {
		refuse(fmt.Sprintf("port %d of task %s: %v", req.Port, req.TaskID, err))
		return
	}
	if err := stream.WriteMsg(s, &wire.TunnelReply{OK: true}); err != nil {
		conn.Close()
		s.Reset()
		return
	}
	_ = s.SetDeadline(time.Time{})
	pipe(ls.ctx, s, br, conn)
}

// handleExec runs one command in the caller's service and streams its
// output back.
func (p *Provider) handleExec(s network.Stream) {
	if !p.live.begin() {
		s.Reset()
		return
	}
	defer p.live.handlers.Done()
	from := s.Conn().RemotePeer()
	if !p.streamLimit.Allow(from) {
		s.Reset()
		return
	}
	br := bufio.NewReader(s)
	var req wire.ExecRequest
	if err := p.readLiveRequest(s, br, wire.MaxExecRequestSize, &req); err != nil {
		p.log.Debug("bad exec request", "peer", from, "err", err)
		_ = stream.WriteMsg(s, &wire.ExecFrame{Error: err.Error()})
		s.Close()
		return
	}
	ls, why := p.live.lookup(from, req.TaskID, req.Attempt)
	if ls != nil && !ls.wait() {
		ls, why = nil, fmt.Sprintf("task %s stopped", req.TaskID)
	}
	if ls == nil {
		p.log.Debug("exec refused", "peer", from, "task", req.TaskID, "reason", why)
		_ = stream.WriteMsg(s, &wire.ExecFrame{Error: why})
		s.Close()
		return
	}
	_ = s.SetDeadline(time.Time{})
	ctx, cancel := context.WithCancel(ls.ctx)
	defer cancel()
	fw := &frameWriter{s: s, cancel: cancel}
	code, err := ls.h.Exec(ctx, req.Cmd, fw.stream(false), fw.stream(true))
	last := wire.ExecFrame{Exit: &code}
	if err != nil {
		last = wire.ExecFrame{Error: err.Error()}
	}
	if fw.write(&last) != nil {
		s.Reset()
		return
	}
	s.Close()
}

// frameWriter turns exec output into ExecFrames on one stream.
type frameWriter struct {
	mu     sync.Mutex
	s      network.Stream
	failed error
	// cancel stops the exec when the requestor went away.
	cancel context.CancelFunc
}

func (fw *frameWriter) write(f *wire.ExecFrame) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.failed != nil {
		return fw.failed
	}
	if err := stream.WriteMsg(fw.s, f); err != nil {
		fw.failed = err
		fw.cancel()
		return err
	}
	return nil
}

type frameStream struct {
	fw     *frameWriter
	stderr bool
}

func (fw *frameWriter) stream(stderr bool) io.Writer { return &frameStream{fw: fw, stderr: stderr} }

func (w *frameStream) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		chunk := b[:min(len(b), wire.ExecChunk)]
		f := &wire.ExecFrame{Stdout: chunk}
		if w.stderr {
			f = &wire.ExecFrame{Stderr: chunk}
		}
		if err := w.fw.write(f); err != nil {
			return n, err
		}
		n += len(chunk)
		b = b[len(chunk):]
	}
	return n, nil
}

// pipe copies a stream (read through sr, which may hold buffered bytes)
// and a TCP connection into each other until both directions end, either
// side fails, or ctx ends. Each direction half-closes the other side when
// its source ends.
func pipe(ctx context.Context, s network.Stream, sr io.Reader, conn net.Conn) {
	stop := context.AfterFunc(ctx, func() {
		s.Reset()
		conn.Close()
	})
	defer stop()
	errs := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, sr)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok && err == nil {
			_ = cw.CloseWrite()
		}
		errs <- err
	}()
	go func() {
		_, err := io.Copy(s, conn)
		if err == nil {
			_ = s.CloseWrite()
		}
		errs <- err
	}()
	for range 2 {
		if err := <-errs; err != nil {
			// One side broke: end both so the other copy returns.
			s.Reset()
			conn.Close()
		}
	}
	conn.Close()
	s.Close()
}
