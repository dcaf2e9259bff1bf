//go:build linux

package events

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// SourceOptions configure the event source (Open).
type SourceOptions struct {
	// Netns is the cookie of the only network namespace whose events are
	// counted (filtered in the kernel); 0 counts every namespace.
	Netns uint64

	// noReason loads the tcp_send_reset program of kernels before 6.10
	// whatever the kernel, for tests.
	noReason bool
}

// Source is the loaded and attached set of event programs and their maps.
// Its methods are safe for concurrent use.
type Source struct {
	mu       sync.Mutex
	coll     *ebpf.Collection
	links    []link.Link
	totals   *ebpf.Map
	details  *ebpf.Map
	drops    *ebpf.Map
	reasons  map[uint32]string
	reasonOK bool
	kb, vb   rawBuf

	// batch receives map entries a chunk at a time (BPF_MAP_LOOKUP_BATCH,
	// Linux 5.6 and later), reused from read to read; noBatch is set when
	// the kernel lacks the command and Read iterates key by key instead.
	batch   batchBuf
	noBatch bool
	// lastLen is the number of records each namespace had in the previous
	// read, totals and details, so that Read sizes its slices once.
	lastLen map[uint64][2]int
}

// batchChunk is the number of entries one batch lookup returns at most:
// 256 x 152 bytes of buffers, and about 64 system calls to read both maps
// full (16384 entries each), against two per entry when iterating.
const batchChunk = 256

// batchBuf holds the keys and values of one batch lookup.
type batchBuf struct {
	keys [][KeySize]byte
	vals [][ValueSize]byte
}

// rawBuf receives map keys and values without allocating.
type rawBuf struct{ b []byte }

func (r *rawBuf) UnmarshalBinary(b []byte) error {
	r.b = append(r.b[:0], b...)
	return nil
}

// programs names the programs to attach, by their function in
// bpf/tcpevents.c; sendReset is chosen by the kernel's tracepoint.
var programs = []string{"set_state", "receive_reset", "retransmit_skb", "retransmit_synack"}

// Open checks, loads and attaches the event programs.
func Open(cfg SourceOptions) (*Source, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("events: loading kernel BTF: %w", err)
	}
	withReason, err := sendResetHasReason(kernel)
	if err != nil {
		return nil, err
	}
	withReason = withReason && !cfg.noReason
	spec, err := loadTcpevents()
	if err != nil {
		return nil, fmt.Errorf("events: loading the embedded objects: %w", err)
	}
	sendReset, unused := "send_reset", "send_reset_noreason"
	if !withReason {
		sendReset, unused = unused, sendReset
	}
	delete(spec.Programs, unused)
	v, ok := spec.Variables["filter_netns"]
	if !ok {
		return nil, errors.New("events: the objects have no filter_netns")
	}
	if err := v.Set(cfg.Netns); err != nil {
		return nil, fmt.Errorf("events: setting the namespace filter: %w", err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: kernel},
	})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			// The whole log is long; its last lines say why.
			return nil, fmt.Errorf("events: loading the programs: %w", ve)
		}
		return nil, fmt.Errorf("events: loading the programs: %w", err)
	}
	s := &Source{
		coll:     coll,
		totals:   coll.Maps["totals"],
		details:  coll.Maps["details"],
		drops:    coll.Maps["drops"],
		reasons:  resetReasons(kernel),
		reasonOK: withReason,
	}
	for _, name := range append(programs, sendReset) {
		l, err := link.AttachTracing(link.TracingOptions{
			Program:    coll.Programs[name],
			AttachType: ebpf.AttachTraceRawTp,
		})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("events: attaching %s: %w", name, err)
		}
		s.links = append(s.links, l)
	}
	return s, nil
}

// sendResetHasReason says whether the kernel's tcp_send_reset tracepoint
// passes the reason (Linux 6.10 and later): its btf_trace_ typedef is a
// pointer to a function of (void *, sk, skb, reason).
func sendResetHasReason(kernel *btf.Spec) (bool, error) {
	var td *btf.Typedef
	if err := kernel.TypeByName("btf_trace_tcp_send_reset", &td); err != nil {
		return false, fmt.Errorf("events: the kernel has no tcp_send_reset tracepoint: %w", err)
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return false, fmt.Errorf("events: btf_trace_tcp_send_reset is a %T, want a pointer", td.Type)
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok {
		return false, fmt.Errorf("events: btf_trace_tcp_send_reset points to a %T, want a function", ptr.Target)
	}
	return len(proto.Params) >= 4, nil
}

// resetReasons names the values of the kernel's enum sk_rst_reason in snake
// case (SK_RST_REASON_NO_SOCKET -> no_socket). Kernels without the enum give
// an empty map.
func resetReasons(kernel *btf.Spec) map[uint32]string {
	m := make(map[uint32]string)
	var e *btf.Enum
	if err := kernel.TypeByName("sk_rst_reason", &e); err != nil {
		return m
	}
	for _, v := range e.Values {
		name := strings.ToLower(strings.TrimPrefix(v.Name, "SK_RST_REASON_"))
		if name == "" || v.Value > 0xffffffff {
			continue
		}
		m[uint32(v.Value)] = name
	}
	return m
}

// ResetReason names a reset reason code: the kernel's name in snake case,
// "unknown" on a kernel that passes none, or the number for a value the
// kernel's enum does not name.
func (s *Source) ResetReason(code uint32) string {
	if code == ReasonUnknown {
		return "unknown"
	}
	if n, ok := s.reasons[code]; ok {
		return n
	}
	return fmt.Sprintf("reason_%d", code)
}

// HasResetReason says whether the kernel passes reset reasons.
func (s *Source) HasResetReason() bool { return s.reasonOK }

// Read returns the current contents of the maps, by namespace cookie.
// Counters only grow (until Prune removes a namespace's entries).
func (s *Source) Read() (*Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.coll == nil {
		return nil, errors.New("events: source closed")
	}
	snap := &Snapshot{Namespaces: make(map[uint64]*Namespace, len(s.lastLen)), sizeHint: s.lastLen}
	for _, m := range []struct {
		m       *ebpf.Map
		details bool
	}{{s.totals, false}, {s.details, true}} {
		if err := s.readMap(snap, m.m, m.details); err != nil {
			return nil, fmt.Errorf("events: reading map %s: %w", m.m.String(), err)
		}
	}
	snap.sizeHint = nil
	s.lastLen = make(map[uint64][2]int, len(snap.Namespaces))
	for c, ns := range snap.Namespaces {
		s.lastLen[c] = [2]int{len(ns.Totals), len(ns.Details)}
	}
	var err error
	snap.Drops, err = s.readDrops()
	if err != nil {
		return nil, err
	}
	return snap, nil
}

// readMap adds every entry of m to snap: in chunks of batchChunk entries,
// or key by key on kernels without batch lookups.
func (s *Source) readMap(snap *Snapshot, m *ebpf.Map, details bool) error {
	if !s.noBatch {
		err := s.readBatches(snap, m, details)
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return err
		}
		s.noBatch = true
	}
	it := m.Iterate()
	for it.Next(&s.kb, &s.vb) {
		snap.add(details, s.kb.b, s.vb.b)
	}
	return it.Err()
}

// readBatches reads m with batch lookups. A batch that finds the map
// unsupported returns ebpf.ErrNotSupported before anything was added.
func (s *Source) readBatches(snap *Snapshot, m *ebpf.Map, details bool) error {
	b := &s.batch
	if b.keys == nil {
		b.keys = make([][KeySize]byte, batchChunk)
		b.vals = make([][ValueSize]byte, batchChunk)
	}
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, b.keys, b.vals, nil)
		for i := range min(n, len(b.keys)) {
			snap.add(details, b.keys[i][:], b.vals[i][:])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil // the end of the map
		}
		if err != nil {
			return err
		}
	}
}

func (s *Source) readDrops() (Drops, error) {
	var d Drops
	for i, dst := range []*uint64{&d.Totals, &d.Details, &d.Storage} {
		var perCPU []uint64
		if err := s.drops.Lookup(uint32(i), &perCPU); err != nil {
			return Drops{}, fmt.Errorf("events: reading drop counter %d: %w", i, err)
		}
		for _, n := range perCPU {
			*dst += n
		}
	}
	return d, nil
}

// Prune deletes every entry of a namespace for which keep returns false
// (one that went away) and returns how many entries it deleted.
func (s *Source) Prune(keep func(netns uint64) bool) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.coll == nil {
		return 0, errors.New("events: source closed")
	}
	n := 0
	for _, m := range []*ebpf.Map{s.totals, s.details} {
		var stale [][]byte
		it := m.Iterate()
		for it.Next(&s.kb, &s.vb) {
			k, err := DecodeKey(s.kb.b)
			if err != nil || !keep(k.Netns) {
				stale = append(stale, append([]byte(nil), s.kb.b...))
			}
		}
		if err := it.Err(); err != nil {
			return n, fmt.Errorf("events: reading map %s: %w", m.String(), err)
		}
		for _, k := range stale {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return n, fmt.Errorf("events: deleting from map %s: %w", m.String(), err)
			}
			n++
		}
	}
	return n, nil
}

// Close detaches the programs and frees the maps.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	s.links = nil
	if s.coll != nil {
		s.coll.Close()
		s.coll = nil
	}
	return errors.Join(errs...)
}

// NetnsCookie returns the cookie of the calling thread's network namespace
// (SO_NETNS_COOKIE, Linux 5.14 and later), the key the programs count by.
// Call it on a locked OS thread when the process switches namespaces.
func NetnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	}
	if err != nil {
		return 0, fmt.Errorf("events: socket for the namespace cookie: %w", err)
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("events: SO_NETNS_COOKIE: %w", err)
	}
	return c, nil
}

// programStats sums the run time and run count of the attached programs
// (kernel.bpf_stats_enabled must be on; see ebpf.EnableStats), for the
// benchmarks.
func (s *Source) programStats() (time.Duration, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rt time.Duration
	var n uint64
	for name, p := range s.coll.Programs {
		st, err := p.Stats()
		if err != nil {
			return 0, 0, fmt.Errorf("events: stats of %s: %w", name, err)
		}
		rt += st.Runtime
		n += st.RunCount
	}
	return rt, n, nil
}
