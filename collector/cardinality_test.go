package collector

import (
	"cmp"
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/diagtest"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// The cardinality tests run Samplers over fake kernels at the scale the
// Hardening issue names (10,000 listeners, 50,000 destinations, 500
// namespaces) and check that the series stay within the limits, that what
// is folded is counted exactly, and that the sums are kept.

// cardProcRoot makes a procfs tree holding only ip_local_port_range
// (32768-60999), so that outbound sockets are told apart as on a real node;
// the other kernel files are missing and merely counted as read errors.
func cardProcRoot(t testing.TB) string {
	root := t.TempDir()
	dir := filepath.Join(root, "sys", "net", "ipv4")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ip_local_port_range"), []byte("32768\t60999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// cardOptions are Sampler options for the fake kernels: quiet, no owner
// lookups, and an interval of two minutes so that the detectors' history
// holds few samples (History/Interval+2) and fills within a few cycles.
func cardOptions(procRoot string, dial func() (*diag.Conn, error)) SamplerOptions {
	return SamplerOptions{
		Dial:     dial,
		ProcRoot: procRoot,
		Interval: 2 * time.Minute,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		LookupOwners: func([]uint64, time.Duration) (map[uint64][]procnet.Process, bool, error) {
			return nil, true, nil
		},
	}
}

// cachedDial is a fake kernel for large dumps and many namespaces: it
// encodes the reply to each (message type, state mask) once and only
// rewrites the sequence numbers for later requests, so that a dump of 100k
// sockets costs the decoding, not the encoding; and unlike
// diagtest.Transport its transport keeps no record of the requests, so
// that a long run's heap is the Sampler's alone.
func cachedDial(socks []diag.Socket) func() (*diag.Conn, error) {
	var mu sync.Mutex
	cache := map[[2]uint32][][]byte{}
	reply := func(r diagtest.Request) [][]byte {
		mask := r.States()
		mu.Lock()
		defer mu.Unlock()
		k := [2]uint32{uint32(r.Type), uint32(mask)}
		dgs, ok := cache[k]
		if !ok {
			var sel []diag.Socket
			for _, s := range socks {
				if mask.Has(s.State) {
					sel = append(sel, s)
				}
			}
			dgs = diagtest.Reply(r, 64, sel)
			cache[k] = dgs
		}
		// The transport copies each datagram out when it is read, after
		// this dump's Send and before the next one's.
		for _, dg := range dgs {
			for off := 0; off+16 <= len(dg); {
				l := int(binary.NativeEndian.Uint32(dg[off:]))
				binary.NativeEndian.PutUint32(dg[off+8:], r.Seq)
				off += (l + 3) &^ 3
			}
		}
		return dgs
	}
	return func() (*diag.Conn, error) { return diag.NewConn(&replayTransport{reply: reply}), nil }
}

// replayTransport is a diag.Transport answering each request with the
// datagrams reply returns.
type replayTransport struct {
	reply func(diagtest.Request) [][]byte
	seq   uint32
	queue [][]byte
}

func (t *replayTransport) Send(msgType uint16, payload []byte) (uint32, error) {
	t.seq++
	t.queue = t.reply(diagtest.Request{Type: msgType, Payload: payload, Seq: t.seq})
	return t.seq, nil
}

func (t *replayTransport) Receive(b []byte) (int, bool, error) {
	if len(t.queue) == 0 {
		return 0, false, os.ErrDeadlineExceeded
	}
	d := t.queue[0]
	t.queue = t.queue[1:]
	n := copy(b, d)
	return n, n < len(d), nil
}

func (t *replayTransport) SetReadDeadline(time.Time) error { return nil }
func (t *replayTransport) Close() error                    { return nil }

// bigNamespace is the socket set of test (a) and what it holds.
type bigNamespace struct {
	socks []diag.Socket
	// Created totals, to compare with the gathered sums.
	listeners, queueLen, queueLimit, synRecv uint64
	destinations                             int
	used, timeWait                           uint64
	closeWait                                uint64
	perState                                 map[string]uint64
}

func addrV4(n uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}

func addrV6(prefix uint16, n uint32) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint16(b[:], 0xfd00)
	binary.BigEndian.PutUint16(b[2:], prefix)
	binary.BigEndian.PutUint32(b[12:], n)
	return netip.AddrFrom16(b)
}

// newBigNamespace makes 10,000 listening addresses (8,000 IPv4, 2,000
// IPv6, ports below ip_local_port_range) with 1,000 SYN_RECV sockets
// among them, 50,000 outbound destinations (45,000 IPv4, 5,000 IPv6) of
// one to three sockets each, ESTABLISHED or TIME_WAIT with local ports in
// the range, and 2,000 CLOSE_WAIT sockets on distinct non-ephemeral ports.
func newBigNamespace() *bigNamespace {
	b := &bigNamespace{perState: map[string]uint64{}}
	add := func(s diag.Socket) {
		b.socks = append(b.socks, s)
		b.perState[s.Family.String()+"/"+s.State.String()]++
	}
	var lkeys []detect.ListenerKey
	for i := range 10000 {
		var s diag.Socket
		if i < 8000 {
			s = listener(diag.AFInet, addrV4(0x0a010001+uint32(i/5000)), uint16(1000+i%5000), uint32(i%7), 128+uint32(i%3))
		} else {
			j := i - 8000
			s = listener(diag.AFInet6, addrV6(1, uint32(1+j/1000)), uint16(1000+j%1000), uint32(j%5), 256)
		}
		add(s)
		lkeys = append(lkeys, detect.ListenerKey{Family: s.Family, Addr: s.Src, Port: s.SrcPort})
		b.listeners++
		b.queueLen += uint64(s.RQueue)
		b.queueLimit += uint64(s.WQueue)
	}
	for i := range 1000 {
		k := lkeys[(i*97)%len(lkeys)]
		src := addrV4(0xc6336400 + uint32(i))
		if k.Family == diag.AFInet6 {
			src = addrV6(9, uint32(i))
		}
		add(sock(k.Family, diag.SynRecv, k.Addr, k.Port, src, uint16(40000+i)))
		b.synRecv++
	}
	port := 0
	for d := range 50000 {
		fam, local, remote := diag.AFInet, addrV4(0x0a020001+uint32(d%4)), addrV4(0x0b000000+uint32(d))
		if d >= 45000 {
			fam, local, remote = diag.AFInet6, addrV6(2, uint32(1+d%4)), addrV6(3, uint32(d))
		}
		rport := uint16(443 + d%3)
		for j := range 1 + d%3 {
			st := diag.Established
			if j == 0 && d%2 == 0 {
				st = diag.TimeWait
				b.timeWait++
			}
			add(sock(fam, st, local, uint16(32768+port%28000), remote, rport))
			port++
			b.used++
		}
		b.destinations++
	}
	for i := range 2000 {
		s := sock(diag.AFInet, diag.CloseWait, addrV4(0x0a040001), uint16(20000+i), addrV4(0x0a050001), uint16(40000+i))
		s.Cookie, s.Inode = uint64(1_000_000+i), uint32(500_000+i)
		add(s)
		b.closeWait++
	}
	return b
}

// series is one gathered sample.
type series struct {
	labels map[string]string
	value  float64
}

// gatherSeries gathers reg and indexes the samples by metric name.
func gatherSeries(t testing.TB, reg prometheus.Gatherer) (map[string][]series, int) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string][]series{}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			var v float64
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			default:
				v = m.GetUntyped().GetValue()
			}
			out[mf.GetName()] = append(out[mf.GetName()], series{l, v})
			n++
		}
	}
	return out, n
}

// sumWhere sums the samples of ss whose labels match every pair of want.
func sumWhere(ss []series, want map[string]string) (sum float64, n int) {
	for _, s := range ss {
		ok := true
		for k, v := range want {
			if s.labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			sum += s.value
			n++
		}
	}
	return sum, n
}

// countOther returns the samples of ss whose label l is "other", and the rest.
func countOther(ss []series, l string) (other, rest int) {
	for _, s := range ss {
		if s.labels[l] == "other" {
			other++
		} else {
			rest++
		}
	}
	return other, rest
}

func TestCardinalityOneNamespace(t *testing.T) {
	b := newBigNamespace()
	s := NewSampler(cardOptions(cardProcRoot(t), cachedDial(b.socks)))
	const maxL, maxD = 1000, 50
	e := NewExporter(func() []Target { return []Target{{Sampler: s}} }, ExporterOptions{MaxListeners: maxL, MaxDestinations: maxD})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	for _, k := range []Kind{Full, Rare} {
		if _, err := s.Sample(k); err != nil {
			t.Fatalf("%s sample: %v", k, err)
		}
	}
	start := time.Now()
	got, total := gatherSeries(t, reg)
	t.Logf("%d sockets: %d series gathered in %v", len(b.socks), total, time.Since(start))

	folded := map[string]float64{}
	for _, s := range got["tcpstate_folded_series"] {
		folded[s.labels["kind"]] = s.value
	}
	wantFolded := map[string]float64{"listeners": 10000 - maxL, "destinations": 50000 - maxD, "closewait": 2000 - 100}
	for k, w := range wantFolded {
		if folded[k] != w {
			t.Errorf("tcpstate_folded_series{kind=%q} = %v, want %v", k, folded[k], w)
		}
	}

	for _, name := range []string{"tcpstate_listener_accept_queue_length", "tcpstate_listener_accept_queue_limit", "tcpstate_listener_syn_recv", "tcpstate_listener_sockets"} {
		other, rest := countOther(got[name], "address")
		if rest != maxL || other < 1 || other > 2 {
			t.Errorf("%s: %d listener series and %d other, want %d and 1 or 2 (one per family)", name, rest, other, maxL)
		}
	}
	for name, want := range map[string]uint64{
		"tcpstate_listener_accept_queue_length": b.queueLen,
		"tcpstate_listener_accept_queue_limit":  b.queueLimit,
		"tcpstate_listener_syn_recv":            b.synRecv,
		"tcpstate_listener_sockets":             b.listeners,
	} {
		if sum, _ := sumWhere(got[name], nil); sum != float64(want) {
			t.Errorf("sum of %s = %v, created %d", name, sum, want)
		}
	}

	for _, name := range []string{"tcpstate_destination_local_ports_used", "tcpstate_destination_time_wait"} {
		other, rest := countOther(got[name], "remote_address")
		if rest != maxD || other != 2 {
			t.Errorf("%s: %d destination series and %d other, want %d and 2 (one per family)", name, rest, other, maxD)
		}
	}
	if sum, _ := sumWhere(got["tcpstate_destination_local_ports_used"], nil); sum != float64(b.used) {
		t.Errorf("sum of tcpstate_destination_local_ports_used = %v, created %d outbound sockets", sum, b.used)
	}
	if sum, _ := sumWhere(got["tcpstate_destination_time_wait"], nil); sum != float64(b.timeWait) {
		t.Errorf("sum of tcpstate_destination_time_wait = %v, created %d", sum, b.timeWait)
	}

	cw := got["tcpstate_close_wait_sockets"]
	if other, rest := countOther(cw, "port"); rest != 100 || other != 1 {
		t.Errorf("tcpstate_close_wait_sockets: %d groups and %d other, want 100 and 1", rest, other)
	}
	if sum, _ := sumWhere(cw, nil); sum != float64(b.closeWait) {
		t.Errorf("sum of tcpstate_close_wait_sockets = %v, created %d", sum, b.closeWait)
	}

	for _, st := range got["tcpstate_sockets"] {
		if w := b.perState[st.labels["family"]+"/"+st.labels["state"]]; st.value != float64(w) {
			t.Errorf("tcpstate_sockets%v = %v, created %d", st.labels, st.value, w)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// smallNamespaces makes n fake namespaces for test (b). Namespace 0 is the
// host (two outbound sockets); namespace i > 0 has (i*37)%499+1 outbound
// sockets, a permutation of 1..499 over i, so that the ranking is known.
// Every namespace also has one listener (accept queue i%4) and one
// CLOSE_WAIT socket.
type smallNamespaces struct {
	samplers []*Sampler
	targets  []Target
	size     []int // outbound sockets per namespace
	total    uint64
	queueLen uint64
}

func smallSockets(i, outbound int) []diag.Socket {
	socks := []diag.Socket{listener(diag.AFInet, v4any, 8080, uint32(i%4), 128)}
	cw := sock(diag.AFInet, diag.CloseWait, v4lo, 8080, v4lo, 40000)
	cw.Cookie, cw.Inode = uint64(7_000_000+i), uint32(7_000_000+i)
	socks = append(socks, cw)
	for j := range outbound {
		socks = append(socks, sock(diag.AFInet, diag.Established, netip.MustParseAddr("10.9.0.1"), uint16(33000+j), netip.MustParseAddr("10.8.0.1"), 80))
	}
	return socks
}

func newSmallNamespaces(n int, procRoot string) *smallNamespaces {
	ns := &smallNamespaces{}
	for i := range n {
		size, labels := 2, []string{HostTarget, "", ""}
		if i > 0 {
			size = (i*37)%499 + 1
			labels = []string{strconv.Itoa(4026531000 + i), "ns" + strconv.Itoa(i%7), "pod-" + strconv.Itoa(i)}
		}
		socks := smallSockets(i, size)
		s := NewSampler(cardOptions(procRoot, cachedDial(socks)))
		ns.samplers = append(ns.samplers, s)
		ns.targets = append(ns.targets, Target{Sampler: s, Labels: labels})
		ns.size = append(ns.size, size)
		ns.total += uint64(len(socks))
		ns.queueLen += uint64(i % 4)
	}
	return ns
}

// resize gives namespace i a new number of outbound sockets.
func (ns *smallNamespaces) resize(i, size int) {
	s := ns.samplers[i]
	old := len(smallSockets(i, ns.size[i]))
	socks := smallSockets(i, size)
	s.opts.Dial = cachedDial(socks)
	s.Close()
	ns.size[i] = size
	ns.total = ns.total - uint64(old) + uint64(len(socks))
}

func (ns *smallNamespaces) sampleAll(t testing.TB) {
	t.Helper()
	for i, s := range ns.samplers {
		if _, err := s.Sample(Full); err != nil {
			t.Fatalf("namespace %d: %v", i, err)
		}
	}
}

// wantKept is the host and the limit-1 largest others by outbound
// sockets (all other sockets are the same in each), ties to the smaller
// label, computed without the Exporter's code.
func (ns *smallNamespaces) wantKept(limit int) []string {
	idx := make([]int, 0, len(ns.targets)-1)
	for i := 1; i < len(ns.targets); i++ {
		idx = append(idx, i)
	}
	slices.SortFunc(idx, func(x, y int) int {
		if c := cmp.Compare(ns.size[y], ns.size[x]); c != 0 {
			return c
		}
		return cmp.Compare(ns.targets[x].Labels[0], ns.targets[y].Labels[0])
	})
	out := []string{HostTarget}
	for _, i := range idx[:limit-1] {
		out = append(out, ns.targets[i].Labels[0])
	}
	slices.Sort(out)
	return out
}

// netnsValues returns the distinct netns label values of ss, sorted.
func netnsValues(ss []series) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s.labels["netns"]) {
			out = append(out, s.labels["netns"])
		}
	}
	slices.Sort(out)
	return out
}

func TestCardinalityNamespaces(t *testing.T) {
	const n, limit = 500, 100
	ns := newSmallNamespaces(n, cardProcRoot(t))
	e := NewExporter(func() []Target { return ns.targets }, ExporterOptions{TargetLabels: []string{"netns", "namespace", "pod"}, MaxTargets: limit})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)

	// Nothing sampled yet: only the namespaces count, no socket series.
	got, _ := gatherSeries(t, reg)
	if v, k := sumWhere(got["tcpstate_folded_series"], map[string]string{"netns": "other", "kind": "namespaces"}); k != 1 || v != n-limit {
		t.Errorf("before sampling: folded namespaces %v (%d series), want %d", v, k, n-limit)
	}
	if len(got["tcpstate_sockets"]) != 0 {
		t.Errorf("before sampling: %d tcpstate_sockets series", len(got["tcpstate_sockets"]))
	}

	ns.sampleAll(t)
	start := time.Now()
	got, total := gatherSeries(t, reg)
	t.Logf("%d namespaces, limit %d: %d series gathered in %v", n, limit, total, time.Since(start))

	check := func(stage string) {
		t.Helper()
		want := append(ns.wantKept(limit), "other")
		slices.Sort(want)
		if vals := netnsValues(got["tcpstate_sockets"]); !slices.Equal(vals, want) {
			t.Errorf("%s: tcpstate_sockets of %d namespaces, want %d; kept %v, want %v", stage, len(vals), len(want), vals, want)
		}
		if vals := netnsValues(got["tcpstate_listener_sockets"]); len(vals) != limit+1 {
			t.Errorf("%s: listener series of %d namespaces, want %d", stage, len(vals), limit+1)
		}
		for kind, w := range map[string]float64{"namespaces": n - limit, "listeners": n - limit, "destinations": n - limit, "closewait": n - limit} {
			if v, k := sumWhere(got["tcpstate_folded_series"], map[string]string{"netns": "other", "kind": kind}); k != 1 || v != w {
				t.Errorf("%s: tcpstate_folded_series{netns=\"other\",kind=%q} = %v (%d series), want %v", stage, kind, v, k, w)
			}
		}
		if v, k := sumWhere(got["tcpstate_folded_series"], map[string]string{"kind": "namespaces"}); k != 1 || v != n-limit {
			t.Errorf("%s: kind=namespaces over all series = %v in %d series, want %d in one", stage, v, k, n-limit)
		}
		if sum, _ := sumWhere(got["tcpstate_sockets"], nil); sum != float64(ns.total) {
			t.Errorf("%s: sum of tcpstate_sockets = %v, created %d", stage, sum, ns.total)
		}
		if sum, _ := sumWhere(got["tcpstate_sockets_max"], nil); sum < float64(ns.total) {
			t.Errorf("%s: sum of tcpstate_sockets_max = %v, below the %d sockets", stage, sum, ns.total)
		}
		if sum, _ := sumWhere(got["tcpstate_listener_accept_queue_length"], nil); sum != float64(ns.queueLen) {
			t.Errorf("%s: sum of accept-queue lengths = %v, created %d", stage, sum, ns.queueLen)
		}
		if sum, k := sumWhere(got["tcpstate_listener_sockets"], map[string]string{"netns": "other", "address": "other"}); sum != n-limit || k != 1 {
			t.Errorf("%s: other listener sockets %v in %d series, want %d in one", stage, sum, k, n-limit)
		}
		outbound := 0
		for _, s := range ns.size {
			outbound += s
		}
		if sum, _ := sumWhere(got["tcpstate_destination_local_ports_used"], nil); sum != float64(outbound) {
			t.Errorf("%s: sum of tcpstate_destination_local_ports_used = %v, created %d", stage, sum, outbound)
		}
		if sum, k := sumWhere(got["tcpstate_close_wait_sockets"], map[string]string{"netns": "other", "port": "other", "command": "other"}); sum != n-limit || k != 1 {
			t.Errorf("%s: other CLOSE_WAIT %v in %d series, want %d in one", stage, sum, k, n-limit)
		}
		if sum, _ := sumWhere(got["tcpstate_close_wait_sockets"], nil); sum != n {
			t.Errorf("%s: sum of tcpstate_close_wait_sockets = %v, created %d", stage, sum, n)
		}
		// The folded namespaces' self-metrics and kernel values are left out.
		for _, name := range []string{"tcpstate_dumps_total", "tcpstate_kernel_read_errors_total", "tcpstate_sample_age_seconds"} {
			if vals := netnsValues(got[name]); len(vals) != limit || slices.Contains(vals, "other") {
				t.Errorf("%s: %s for %d namespaces (other included: %v), want the %d kept", stage, name, len(vals), slices.Contains(vals, "other"), limit)
			}
		}
	}
	check("first scrape")

	// The same data scraped again reports the same namespaces.
	got, _ = gatherSeries(t, reg)
	check("second scrape")

	// A folded namespace that grows past the smallest kept one by less than
	// the hysteresis stays folded; one that grows well past it is reported.
	smallestKept := 401 // sizes 401..499 are the 99 largest
	var grower int
	for i, s := range ns.size {
		if s == smallestKept-1 {
			grower = i
		}
	}
	ns.resize(grower, smallestKept+50)
	ns.sampleAll(t)
	got, _ = gatherSeries(t, reg)
	label := ns.targets[grower].Labels[0]
	if slices.Contains(netnsValues(got["tcpstate_sockets"]), label) {
		t.Errorf("namespace %s grew from %d to %d outbound sockets (smallest kept %d) and displaced a kept one: series flap", label, smallestKept-1, smallestKept+50, smallestKept)
	}
	if sum, _ := sumWhere(got["tcpstate_sockets"], nil); sum != float64(ns.total) {
		t.Errorf("after growth: sum of tcpstate_sockets = %v, created %d", sum, ns.total)
	}
	ns.resize(grower, 2*smallestKept)
	ns.sampleAll(t)
	got, _ = gatherSeries(t, reg)
	check("after a namespace doubled")
	if !slices.Contains(netnsValues(got["tcpstate_sockets"]), label) {
		t.Errorf("namespace %s with %d outbound sockets, the largest, is not reported", label, 2*smallestKept)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// TestCardinalityMemoryBounded runs 50 sample and gather cycles over the
// big namespace and 500 small ones and checks that the heap in use after a
// GC does not grow from cycle 10 to cycle 50. The detectors' history and
// the window maxima hold a bounded number of samples (History/Interval+2
// and Window/Interval+2); the Samplers here use a 2 minute interval so that
// those rings are full by cycle 10.
func TestCardinalityMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("50 cycles over 600k sockets: skipped in -short mode")
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	root := cardProcRoot(t)
	b := newBigNamespace()
	big := NewSampler(cardOptions(root, cachedDial(b.socks)))
	ns := newSmallNamespaces(500, root)
	targets := append([]Target{{Sampler: big, Labels: []string{"4026539999", "big", "big-0"}}}, ns.targets...)
	e := NewExporter(func() []Target { return targets }, ExporterOptions{TargetLabels: []string{"netns", "namespace", "pod"}, MaxTargets: 100})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	setup := heap()
	t.Logf("heap after GC with the fake kernels and Samplers built, nothing sampled: %.1f MiB", float64(setup)/(1<<20))
	var at10 uint64
	for cycle := 1; cycle <= 50; cycle++ {
		kind := Full
		if cycle%2 == 0 {
			kind = Rare
		}
		sStart := time.Now()
		if _, err := big.Sample(kind); err != nil {
			t.Fatalf("cycle %d: big namespace: %v", cycle, err)
		}
		ns.sampleAll(t)
		sampled := time.Since(sStart)
		gStart := time.Now()
		got, n := gatherSeries(t, reg)
		gathered := time.Since(gStart)
		if v, _ := sumWhere(got["tcpstate_folded_series"], map[string]string{"kind": "namespaces"}); v != 401 {
			t.Fatalf("cycle %d: %v namespaces folded, want 401", cycle, v)
		}
		h := heap()
		if cycle == 1 || cycle%10 == 0 {
			t.Logf("cycle %2d: %s sample of 113k sockets and 500 small namespaces in %v; %d series gathered in %v; heap after GC %.1f MiB",
				cycle, kind, sampled.Round(time.Millisecond), n, gathered.Round(time.Millisecond), float64(h)/(1<<20))
		}
		switch cycle {
		case 10:
			at10 = h
		case 50:
			if h > at10+2<<20 {
				t.Errorf("heap after GC grew from %.1f MiB at cycle 10 to %.1f MiB at cycle 50, more than 2 MiB",
					float64(at10)/(1<<20), float64(h)/(1<<20))
			}
		}
	}
}
