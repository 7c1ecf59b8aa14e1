package wire

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Capability adverts: topic, protocol and limits.
const (
	// TopicCaps carries signed capability records (SignedCapRecord).
	TopicCaps = "/offload/caps/1"
	// ProtoCaps: any peer -> any peer, one CapsRequest, answered by one
	// CapsResponse holding the responder's own record (when it is a
	// provider and matches) and a random sample of the other records it
	// knows that match the request's filter, at most the request's Max. A
	// node asks each peer it connects to for a small sample, so that a node
	// that joins late has candidates at once, and asks for records matching
	// a task's requirements when it lacks candidates (Pool.Lookup).
	ProtoCaps = "/offload/caps/1"
	// MaxCapRecordSize bounds one signed record, on gossip and in a
	// CapsResponse.
	MaxCapRecordSize = 16 << 10
	// MaxCapsRecords bounds the records of one CapsResponse.
	MaxCapsRecords = 512
	// MaxCapsResponseSize bounds a CapsResponse.
	MaxCapsResponseSize = 4 << 20
	// MaxCapsRequestSize bounds a CapsRequest (an old asker's Have map of
	// MaxCapsRecords entries fits).
	MaxCapsRequestSize = 64 << 10
	// MaxCapsTTL is the longest lifetime a record may claim.
	MaxCapsTTL = 10 * time.Minute
	// capSignDomain separates capability signatures from any other use of
	// the peer's key.
	capSignDomain = "offload-caps-record:"
)

// Field limits of a capability record.
const (
	maxCapAddrs    = 32
	maxCapAddrLen  = 256
	maxCapGPUs     = 64
	maxCapLabels   = 64
	maxCapLabelLen = 256
	maxCapText     = 256
	maxExecutors   = 16
)

// GPU is one accelerator in a capability record.
type GPU struct {
	Vendor      string `json:"vendor"`
	Model       string `json:"model"`
	MemoryBytes int64  `json:"memory_bytes"`
	// ComputeCapability is the device's compute capability ("9.0" for an
	// H100); DriverVersion and CUDAVersion are the machine's driver and
	// the CUDA version it supports. Empty when unknown.
	ComputeCapability string `json:"compute_capability,omitempty"`
	DriverVersion     string `json:"driver_version,omitempty"`
	CUDAVersion       string `json:"cuda_version,omitempty"`
}

// Hardware is a provider's machine as it advertises it.
type Hardware struct {
	OS            string            `json:"os"`
	Arch          string            `json:"arch"`
	CPUModel      string            `json:"cpu_model"`
	CPUs          int               `json:"cpus"`
	MemoryBytes   int64             `json:"memory_bytes"`
	DiskFreeBytes int64             `json:"disk_free_bytes"`
	GPUs          []GPU             `json:"gpus"`
	Labels        map[string]string `json:"labels"`
}

// Validate checks ranges and sizes.
func (h *Hardware) Validate() error {
	for _, s := range []string{h.OS, h.Arch, h.CPUModel} {
		if len(s) > maxCapText {
			return invalid("hardware text field longer than %d bytes", maxCapText)
		}
	}
	if h.CPUs < 0 || h.CPUs > 1<<16 || h.MemoryBytes < 0 || h.DiskFreeBytes < 0 {
		return invalid("negative or absurd cpus, memory or disk")
	}
	if len(h.GPUs) > maxCapGPUs {
		return invalid("more than %d gpus", maxCapGPUs)
	}
	for _, g := range h.GPUs {
		if len(g.Vendor) > maxCapText || len(g.Model) > maxCapText || g.MemoryBytes < 0 ||
			len(g.ComputeCapability) > 16 || len(g.DriverVersion) > 32 || len(g.CUDAVersion) > 16 {
			return invalid("gpu %q: bad vendor, model, memory or version", g.Model)
		}
	}
	if len(h.Labels) > maxCapLabels {
		return invalid("more than %d labels", maxCapLabels)
	}
	for k, v := range h.Labels {
		if k == "" || len(k) > maxCapLabelLen || len(v) > maxCapLabelLen || strings.ContainsAny(k, "=,") {
			return invalid("label %q: empty, too long or has '=' or ','", k)
		}
	}
	return nil
}

// CapRecord is a provider's capability record: what it has, what it runs,
// what it asks, and what is free now. It travels signed (SignedCapRecord).
type CapRecord struct {
	Version int `json:"v"`
	// Peer is the provider's peer ID; the record is signed with its key.
	Peer  string   `json:"peer"`
	Addrs []string `json:"addrs"`
	// Hardware is the machine's inventory and labels.
	Hardware  Hardware `json:"hardware"`
	Executors []string `json:"executors"`
	// Isolation lists the stronger sandboxes the provider offers
	// (IsolationGVisor); IsolationRequired says it runs every task so.
	Isolation         []string `json:"isolation,omitempty"`
	IsolationRequired bool     `json:"isolation_required,omitempty"`
	// Price in credits per CPU-second.
	Price float64 `json:"price"`
	// Capacity is what the provider offers in all (it may be less than the
	// hardware: some memory is kept for the host).
	Capacity Resources `json:"capacity"`
	// Free is the capacity not held by bids or tasks when the record was made.
	Free Resources `json:"free"`
	// Software is the node's software version.
	Software string `json:"software"`
	// Seq grows with every record a peer issues (also across restarts);
	// receivers ignore a record whose Seq is not above what they hold.
	Seq uint64 `json:"seq"`
	// IssuedAt and Expires are unix milliseconds.
	IssuedAt int64 `json:"issued_at"`
	Expires  int64 `json:"expires"`
}

// Validate checks a record's fields. Expiry against the clock is the
// receiver's decision (see Expired).
func (r *CapRecord) Validate() error {
	if r.Version != Version {
		return invalid("unsupported version %d", r.Version)
	}
	if _, err := peer.Decode(r.Peer); err != nil {
		return invalid("peer %q is not a peer id", r.Peer)
	}
	if len(r.Addrs) > maxCapAddrs {
		return invalid("more than %d addresses", maxCapAddrs)
	}
	for _, a := range r.Addrs {
		if len(a) > maxCapAddrLen {
			return invalid("address longer than %d bytes", maxCapAddrLen)
		}
		if _, err := ma.NewMultiaddr(a); err != nil {
			return invalid("address %q: %v", a, err)
		}
	}
	if err := r.Hardware.Validate(); err != nil {
		return err
	}
	if len(r.Executors) > maxExecutors {
		return invalid("more than %d executors", maxExecutors)
	}
	for _, e := range r.Executors {
		if e == "" || len(e) > 32 {
			return invalid("executor name %q empty or too long", e)
		}
	}
	if len(r.Isolation) > maxExecutors {
		return invalid("more than %d isolation kinds", maxExecutors)
	}
	for _, e := range r.Isolation {
		if e == "" || len(e) > 32 {
			return invalid("isolation name %q empty or too long", e)
		}
	}
	if r.Price < 0 || len(r.Software) > maxCapText {
		return invalid("negative price or software version too long")
	}
	if err := r.Free.Validate(); err != nil {
		return err
	}
	if err := r.Capacity.Validate(); err != nil {
		return err
	}
	if r.Seq == 0 {
		return invalid("sequence number 0")
	}
	if r.IssuedAt <= 0 || r.Expires <= r.IssuedAt || time.Duration(r.Expires-r.IssuedAt)*time.Millisecond > MaxCapsTTL {
		return invalid("expiry must be after issue and at most %s later", MaxCapsTTL)
	}
	return nil
}

// Expired reports whether the record is past its expiry at now.
func (r *CapRecord) Expired(now time.Time) bool { return now.UnixMilli() >= r.Expires }

// PeerID returns the record's peer (valid after Validate).
func (r *CapRecord) PeerID() peer.ID {
	id, _ := peer.Decode(r.Peer)
	return id
}

// SignedCapRecord is the envelope on the wire: the record's JSON bytes as
// signed, and the signature by the record's peer key over
// "offload-caps-record:" + Record.
type SignedCapRecord struct {
	Record    []byte `json:"record"`
	Signature []byte `json:"sig"`
}

// SignCapRecord validates rec and returns its signed envelope, encoded.
func SignCapRecord(rec *CapRecord, key crypto.PrivKey) ([]byte, error) {
	if err := rec.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode capability record: %w", err)
	}
	sig, err := key.Sign(append([]byte(capSignDomain), body...))
	if err != nil {
		return nil, fmt.Errorf("sign capability record: %w", err)
	}
	env, err := json.Marshal(&SignedCapRecord{Record: body, Signature: sig})
	if err != nil {
		return nil, fmt.Errorf("encode capability envelope: %w", err)
	}
	if len(env) > MaxCapRecordSize {
		return nil, invalid("signed capability record is %d bytes (limit %d)", len(env), MaxCapRecordSize)
	}
	return env, nil
}

// DecodeCapRecord checks a signed envelope from the network: size, JSON,
// the signature against the public key embedded in the record's peer ID,
// and the record's fields. It is the single entry point for capability
// bytes and a fuzz target (ParseCapRecord then VerifyCapRecord, for callers
// that can drop a record before its signature is worth checking). Expiry
// and freshness are the caller's to check.
func DecodeCapRecord(data []byte) (*CapRecord, error) {
	rec, env, err := ParseCapRecord(data)
	if err != nil {
		return nil, err
	}
	if err := VerifyCapRecord(rec, env); err != nil {
		return nil, err
	}
	return rec, nil
}

// ParseCapRecord is DecodeCapRecord without the signature check: size,
// JSON and the record's fields. Nothing in the record may be trusted until
// VerifyCapRecord accepts it; until then it may only be dropped (as stale
// or expired, say), which saves the signature check a duplicate costs.
func ParseCapRecord(data []byte) (*CapRecord, *SignedCapRecord, error) {
	if len(data) > MaxCapRecordSize {
		return nil, nil, invalid("capability record is %d bytes (limit %d)", len(data), MaxCapRecordSize)
	}
	var env SignedCapRecord
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, nil, fmt.Errorf("%w: envelope: %v", ErrInvalid, err)
	}
	if len(env.Record) == 0 || len(env.Signature) == 0 || len(env.Signature) > 1024 {
		return nil, nil, invalid("envelope without record or with a bad signature size")
	}
	var rec CapRecord
	if err := json.Unmarshal(env.Record, &rec); err != nil {
		return nil, nil, fmt.Errorf("%w: record: %v", ErrInvalid, err)
	}
	if err := rec.Validate(); err != nil {
		return nil, nil, err
	}
	return &rec, &env, nil
}

// VerifyCapRecord checks env's signature against the public key embedded
// in rec's peer ID; rec and env are what ParseCapRecord returned together.
func VerifyCapRecord(rec *CapRecord, env *SignedCapRecord) error {
	pub, err := rec.PeerID().ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("%w: peer %s does not embed its public key: %v", ErrBadSignature, rec.Peer, err)
	}
	ok, err := pub.Verify(append([]byte(capSignDomain), env.Record...), env.Signature)
	if err != nil || !ok {
		return fmt.Errorf("%w: record of %s", ErrBadSignature, rec.Peer)
	}
	return nil
}

// ErrBadSignature is wrapped when a record's signature does not verify
// against its peer's key. It also wraps ErrInvalid.
var ErrBadSignature = fmt.Errorf("%w: bad signature", ErrInvalid)

// CapsRequest asks a peer for the capability records it holds. Fields
// unknown to the responder are ignored (JSON), so an old responder answers
// a request with a Filter as one without: the asker checks each record.
type CapsRequest struct {
	// Max bounds the records in the answer (0 = MaxCapsRecords).
	Max int `json:"max,omitempty"`
	// Have maps the peers whose records the asker holds to their sequence
	// numbers; the answer leaves out records that are not newer. Current
	// askers leave it empty (it grows with the asker's pool); responders
	// still honour it.
	Have map[string]uint64 `json:"have,omitempty"`
	// Filter, when set, limits the answer to records that match it.
	Filter *CapsFilter `json:"filter,omitempty"`
}

// Validate checks a request.
func (c *CapsRequest) Validate() error {
	if c.Max < 0 {
		return invalid("negative max")
	}
	if len(c.Have) > MaxCapsRecords {
		return invalid("more than %d known records", MaxCapsRecords)
	}
	if c.Filter != nil {
		return c.Filter.Validate()
	}
	return nil
}

// CapsFilter selects capability records by what a task needs; its fields
// mean what discovery.PoolFilter's mean (zero numbers and empty strings
// match everything).
type CapsFilter struct {
	CPUs        float64           `json:"cpus,omitempty"`
	MemoryBytes int64             `json:"memory_bytes,omitempty"`
	GPUs        int               `json:"gpus,omitempty"`
	GPUModel    string            `json:"gpu_model,omitempty"`
	Arch        string            `json:"arch,omitempty"`
	OS          string            `json:"os,omitempty"`
	Executor    string            `json:"executor,omitempty"`
	Isolation   string            `json:"isolation,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	// GPU are typed requirements each matching GPU must meet.
	GPU *GPURequirements `json:"gpu,omitempty"`
}

// Validate checks a filter's ranges and sizes.
func (f *CapsFilter) Validate() error {
	if err := (Resources{CPUs: f.CPUs, MemoryBytes: f.MemoryBytes, GPUs: f.GPUs}).Validate(); err != nil {
		return err
	}
	for _, s := range []string{f.GPUModel, f.Arch, f.OS, f.Executor, f.Isolation} {
		if len(s) > maxCapText {
			return invalid("filter text field longer than %d bytes", maxCapText)
		}
	}
	if len(f.Labels) > maxCapLabels {
		return invalid("filter has more than %d labels", maxCapLabels)
	}
	for k, v := range f.Labels {
		if len(k) > maxCapLabelLen || len(v) > maxCapLabelLen {
			return invalid("filter label %q too long", k)
		}
	}
	if f.GPU != nil {
		return f.GPU.Validate()
	}
	return nil
}

// CapsResponse carries signed records, each checked by the receiver with
// DecodeCapRecord as if it came from gossip.
type CapsResponse struct {
	Records [][]byte `json:"records"`
}

// Validate checks the number and size of the records; each record is
// checked on its own by whoever takes it (DecodeCapRecord).
func (c *CapsResponse) Validate() error {
	if len(c.Records) > MaxCapsRecords {
		return invalid("more than %d records", MaxCapsRecords)
	}
	for _, r := range c.Records {
		if len(r) > MaxCapRecordSize {
			return invalid("record of %d bytes (limit %d)", len(r), MaxCapRecordSize)
		}
	}
	return nil
}
