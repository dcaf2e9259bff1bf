package collector

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/events"
)

// EventSource is what the collector needs of an events.Source.
type EventSource interface {
	Read() (*events.Snapshot, error)
	Prune(keep func(netns uint64) bool) (int, error)
	ResetReason(code uint32) string
	HasResetReason() bool
}

// EventReader shares one event source among the samplers of every
// namespace: a read of the kernel maps serves every sampler that asks
// within ReuseFor, and the entries of a namespace that no sampler asked for
// in PruneAfter (one that went away) are deleted from the maps.
type EventReader struct {
	src        EventSource
	log        *slog.Logger
	reuseFor   time.Duration
	pruneAfter time.Duration

	mu        sync.Mutex
	at        time.Time
	snap      *events.Snapshot
	err       error
	seen      map[uint64]time.Time
	lastPrune time.Time
	stats     eventStats

	dropped, readErrors, skipped, pruned, entries *prometheus.Desc
}

type eventStats struct {
	readErrors, skipped, pruned uint64
	drops                       events.Drops
	// totals and details are the entries of each map at the latest read.
	totals, details int
}

// NewEventReader returns an EventReader over src. Reads are reused for half
// a second; entries of namespaces no sampler asked for in 5 minutes are
// deleted.
func NewEventReader(src EventSource, log *slog.Logger) *EventReader {
	if log == nil {
		log = slog.Default()
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_events_"+name, help, labels, nil)
	}
	return &EventReader{
		src:        src,
		log:        log,
		reuseFor:   500 * time.Millisecond,
		pruneAfter: 5 * time.Minute,
		seen:       map[uint64]time.Time{},
		dropped:    d("dropped_total", "Events lost by the eBPF programs because a map was full (totals, details) or a socket's opening time could not be stored (storage), since they were loaded.", "map"),
		readErrors: d("read_errors_total", "Failed reads of the eBPF maps."),
		skipped:    d("records_skipped_total", "eBPF map records that did not decode and were skipped."),
		pruned:     d("pruned_entries_total", "eBPF map entries deleted because their network namespace went away."),
		entries:    d("map_entries", "Entries in the eBPF maps at the latest read (totals, details; 16384 each at most): a details map near its size drops detail events.", "map"),
	}
}

// namespace returns the records of the namespace with the given cookie
// from a read at most reuseFor old.
func (r *EventReader) namespace(cookie uint64, now time.Time) (*events.Namespace, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[cookie] = now
	if r.snap == nil || now.Sub(r.at) >= r.reuseFor || now.Before(r.at) {
		r.refreshLocked(now)
	}
	if r.err != nil {
		return nil, r.err
	}
	ns := r.snap.Namespaces[cookie]
	if ns == nil {
		ns = &events.Namespace{}
	}
	return ns, nil
}

func (r *EventReader) refreshLocked(now time.Time) {
	snap, err := r.src.Read()
	r.at = now
	if err != nil {
		r.stats.readErrors++
		if r.err == nil {
			r.log.Warn("cannot read the eBPF event maps; event metrics are left out until they read again", "err", err)
		}
		r.err, r.snap = err, nil
		return
	}
	if r.err != nil {
		r.log.Info("eBPF event maps readable again")
	}
	r.err, r.snap = nil, snap
	r.stats.drops = snap.Drops
	// The entries are counted once the namespaces that went away are
	// pruned, so that the gauge says what the maps hold after this read.
	defer r.countEntriesLocked()
	if snap.Skipped > 0 {
		r.stats.skipped += uint64(snap.Skipped)
		r.log.Warn("skipped eBPF map records that did not decode", "count", snap.Skipped, "err", snap.Err)
	}
	for c := range snap.Namespaces {
		if _, ok := r.seen[c]; !ok {
			r.seen[c] = now // a new namespace gets pruneAfter to be asked for
		}
	}
	if now.Sub(r.lastPrune) < r.pruneAfter/5 {
		return
	}
	r.lastPrune = now
	stale := map[uint64]bool{}
	for c, t := range r.seen {
		if now.Sub(t) > r.pruneAfter {
			stale[c] = true
		}
	}
	if len(stale) == 0 {
		return
	}
	n, err := r.src.Prune(func(c uint64) bool { return !stale[c] })
	r.stats.pruned += uint64(n)
	if err != nil {
		r.log.Warn("cannot delete the eBPF map entries of vanished namespaces", "err", err)
		return
	}
	for c := range stale {
		delete(r.seen, c)
		delete(r.snap.Namespaces, c)
	}
}

// countEntriesLocked counts the map entries of the latest read.
func (r *EventReader) countEntriesLocked() {
	r.stats.totals, r.stats.details = 0, 0
	for _, ns := range r.snap.Namespaces {
		r.stats.totals += len(ns.Totals)
		r.stats.details += len(ns.Details)
	}
}

// Describe sends the reader's own metrics.
func (r *EventReader) Describe(ch chan<- *prometheus.Desc) {
	ch <- r.dropped
	ch <- r.readErrors
	ch <- r.skipped
	ch <- r.pruned
	ch <- r.entries
}

// Collect sends the reader's own metrics.
func (r *EventReader) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	st := r.stats
	r.mu.Unlock()
	send := func(d *prometheus.Desc, v uint64, l ...string) {
		if m, err := prometheus.NewConstMetric(d, prometheus.CounterValue, float64(v), l...); err == nil {
			ch <- m
		} else {
			r.log.Error("building an event self-metric", "err", err)
		}
	}
	send(r.dropped, st.drops.Totals, "totals")
	send(r.dropped, st.drops.Details, "details")
	send(r.dropped, st.drops.Storage, "storage")
	send(r.readErrors, st.readErrors)
	send(r.skipped, st.skipped)
	send(r.pruned, st.pruned)
	for _, m := range []struct {
		name string
		n    int
	}{{"totals", st.totals}, {"details", st.details}} {
		if g, err := prometheus.NewConstMetric(r.entries, prometheus.GaugeValue, float64(m.n), m.name); err == nil {
			ch <- g
		} else {
			r.log.Error("building an event self-metric", "err", err)
		}
	}
}

// EventSample is what the event source had counted in a namespace when a
// sample was taken: totals since the programs were loaded.
type EventSample struct {
	Records *events.Namespace
	// Reason names reset reason codes.
	Reason func(code uint32) string
	// BaseReason is the reason always exported, 0 until a reset is sent,
	// so that tcpstate_resets_sent_total exists from the start: the
	// kernel's name of reason 0 (not_specified), or "unknown" on kernels
	// that pass no reason.
	BaseReason string
	// Summary is the detectors' view (interval rises by peer, port and
	// destination).
	Summary *detect.Events
}

// samplerEvents is a Sampler's side of the event source.
type samplerEvents struct {
	// mu serialises sample: a Sampler's lanes sample concurrently.
	mu      sync.Mutex
	reader  *EventReader
	cookie  uint64
	prev    map[events.Key]uint64
	failing bool
}

// sample reads the namespace's records; nil when they cannot be read.
func (se *samplerEvents) sample(now time.Time, inNetns func(func() error) error, log *slog.Logger) *EventSample {
	se.mu.Lock()
	defer se.mu.Unlock()
	if se.cookie == 0 {
		err := inNetns(func() (err error) {
			se.cookie, err = events.NetnsCookie()
			return err
		})
		if err != nil {
			if !se.failing {
				se.failing = true
				log.Warn("cannot read the network namespace cookie; event metrics are left out for this namespace", "err", err)
			}
			se.cookie = 0
			return nil
		}
	}
	ns, err := se.reader.namespace(se.cookie, now)
	if err != nil {
		return nil
	}
	se.failing = false
	es := &EventSample{Records: ns, Reason: se.reader.src.ResetReason}
	if se.reader.src.HasResetReason() {
		es.BaseReason = SafeLabel(es.Reason(0))
	} else {
		es.BaseReason = SafeLabel(es.Reason(events.ReasonUnknown))
	}
	es.Summary = se.summarize(ns, es.Reason)
	return es
}

// summarize builds the detectors' view: totals, and the rises since the
// previous sample by peer, port and destination.
func (se *samplerEvents) summarize(ns *events.Namespace, reason func(uint32) string) *detect.Events {
	ev := &detect.Events{ResetsSent: map[string]uint64{}, ConnectFailures: map[string]uint64{}}
	for _, r := range ns.Totals {
		switch r.Kind {
		case events.KindResetSent:
			ev.ResetsSent[SafeLabel(reason(r.Code))] += r.Count
		case events.KindResetReceived:
			ev.ResetsReceived += r.Count
		case events.KindConnectFailure:
			ev.ConnectFailures[events.ConnectFailureReason(r.Code)] += r.Count
		}
	}
	recvFrom, sentTo, sentFrom, retransTo := map[string]uint64{}, map[string]uint64{}, map[string]uint64{}, map[string]uint64{}
	type cf struct{ dst, reason string }
	fails := map[cf]uint64{}
	next := make(map[events.Key]uint64, len(ns.Details))
	for _, r := range ns.Details {
		switch r.Kind {
		case events.KindResetSent, events.KindResetReceived, events.KindConnectFailure, events.KindRetransmit:
		default:
			continue
		}
		next[r.Key] = r.Count
		d := r.Count
		if p, ok := se.prev[r.Key]; ok && p <= d {
			d -= p
		}
		if d == 0 {
			continue
		}
		switch r.Kind {
		case events.KindResetReceived:
			recvFrom[addrLabel(r.Addr)] += d
		case events.KindResetSent:
			sentTo[addrLabel(r.Addr)] += d
			if r.LocalPort != 0 { // 0: an ephemeral port, not recorded
				sentFrom[strconv.Itoa(int(r.LocalPort))] += d
			}
		case events.KindConnectFailure:
			dst := netip.AddrPortFrom(r.Addr, r.RemotePort).String()
			fails[cf{dst, events.ConnectFailureReason(r.Code)}] += d
		case events.KindRetransmit:
			retransTo[addrLabel(r.Addr)] += d
		}
	}
	se.prev = next
	ev.ResetsReceivedFrom = detect.TopKeyCounts(recvFrom, detect.MaxEventEntries)
	ev.ResetsSentTo = detect.TopKeyCounts(sentTo, detect.MaxEventEntries)
	ev.ResetsSentFrom = detect.TopKeyCounts(sentFrom, detect.MaxEventEntries)
	ev.RetransmitsTo = detect.TopKeyCounts(retransTo, detect.MaxEventEntries)
	for k, n := range fails {
		ev.ConnectFailuresTo = append(ev.ConnectFailuresTo, detect.ConnectFailure{Destination: k.dst, Reason: k.reason, Count: n})
	}
	slices.SortFunc(ev.ConnectFailuresTo, func(a, b detect.ConnectFailure) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Destination, b.Destination); c != 0 {
			return c
		}
		return cmp.Compare(a.Reason, b.Reason)
	})
	if len(ev.ConnectFailuresTo) > detect.MaxEventEntries {
		ev.ConnectFailuresTo = ev.ConnectFailuresTo[:detect.MaxEventEntries]
	}
	return ev
}

func addrLabel(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return SafeLabel(a.Unmap().String())
}

// eventDescs are the event source's per-namespace metric families.
type eventDescs struct {
	resetsSent, resetsReceived, connectFailures *prometheus.Desc
	opened, closed, lifetime                    *prometheus.Desc
	retransmits, synackRetransmits              *prometheus.Desc
	listenerOpened, listenerClosed              *prometheus.Desc
	listenerRetrans, listenerSynack             *prometheus.Desc
	destOpened, destClosed, destFailures        *prometheus.Desc
	peerResetsRecv, peerResetsSent              *prometheus.Desc
	peerRetrans, peerSynack                     *prometheus.Desc
	listenerLifetime, destLifetime              *prometheus.Desc
}

func newEventDescs(d func(name, help string, labels ...string) *prometheus.Desc) eventDescs {
	dst := []string{"remote_address", "remote_port"}
	return eventDescs{
		resetsSent:        d("resets_sent_total", "TCP resets sent, by the kernel's reason (eBPF tcp:tcp_send_reset; \"unknown\" on kernels before 6.10), since the event programs were loaded.", "reason"),
		resetsReceived:    d("resets_received_total", "TCP resets received (eBPF tcp:tcp_receive_reset)."),
		connectFailures:   d("connect_failures_total", "Connects that failed (SYN_SENT to CLOSE), by the socket's error: refused, timeout, reset, unreachable, other (eBPF).", "reason"),
		opened:            d("connections_opened_total", "Connections established, active (connect) or passive (accept) (eBPF).", "direction"),
		closed:            d("connections_closed_total", "Established connections closed, by the direction of their opening (unknown: opened before the event programs were loaded) (eBPF).", "direction"),
		lifetime:          d("connection_lifetime_seconds", "Lifetime of closed connections, from established to closed, whose opening the event programs saw (eBPF).", "direction"),
		retransmits:       d("retransmitted_segments_total", "TCP segments retransmitted (eBPF tcp:tcp_retransmit_skb)."),
		synackRetransmits: d("synack_retransmits_total", "SYN-ACKs retransmitted by listeners (eBPF tcp:tcp_retransmit_synack)."),
		listenerOpened:    d("listener_connections_opened_total", "Passive connections established per local port (top --collector.events.max-series by count, the rest in port \"other\") (eBPF).", "port"),
		listenerClosed:    d("listener_connections_closed_total", "Passive connections closed per local port (top-K, \"other\") (eBPF).", "port"),
		listenerRetrans:   d("listener_retransmitted_segments_total", "Segments retransmitted on connections whose local port is a listening port (top-K, \"other\") (eBPF).", "port"),
		listenerSynack:    d("listener_synack_retransmits_total", "SYN-ACKs retransmitted per listening port (top-K, \"other\") (eBPF).", "port"),
		destOpened:        d("destination_connections_opened_total", "Active connections established per destination (top-K, \"other\") (eBPF).", dst...),
		destClosed:        d("destination_connections_closed_total", "Active connections closed per destination (top-K, \"other\") (eBPF).", dst...),
		destFailures:      d("destination_connect_failures_total", "Failed connects per destination and reason (top-K, \"other\") (eBPF).", append(dst, "reason")...),
		peerResetsRecv:    d("peer_resets_received_total", "Resets received per remote address (top-K, \"other\") (eBPF).", "remote_address"),
		peerResetsSent:    d("peer_resets_sent_total", "Resets sent per remote address (top-K, \"other\") (eBPF).", "remote_address"),
		peerRetrans:       d("peer_retransmitted_segments_total", "Segments retransmitted per remote address (top-K, \"other\") (eBPF).", "remote_address"),
		peerSynack:        d("peer_synack_retransmits_total", "SYN-ACKs retransmitted per remote address (top-K, \"other\") (eBPF).", "remote_address"),
		listenerLifetime:  d("listener_connection_lifetime_seconds", "Lifetime of closed passive connections per local port, from established to closed (top --collector.events.max-lifetime-series listeners by closed connections, the rest in port \"other\") (eBPF).", "port"),
		destLifetime:      d("destination_connection_lifetime_seconds", "Lifetime of closed active connections per destination, from established to closed (top --collector.events.max-lifetime-series destinations by closed connections, the rest in \"other\") (eBPF).", dst...),
	}
}

func (ed *eventDescs) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{ed.resetsSent, ed.resetsReceived, ed.connectFailures, ed.opened, ed.closed, ed.lifetime,
		ed.retransmits, ed.synackRetransmits, ed.listenerOpened, ed.listenerClosed, ed.listenerRetrans, ed.listenerSynack,
		ed.destOpened, ed.destClosed, ed.destFailures, ed.peerResetsRecv, ed.peerResetsSent, ed.peerRetrans, ed.peerSynack,
		ed.listenerLifetime, ed.destLifetime} {
		ch <- d
	}
}

// lifetimeBounds are the histogram's upper bounds in seconds.
var lifetimeBounds = func() []float64 {
	out := make([]float64, len(events.LifetimeBuckets))
	for i, b := range events.LifetimeBuckets {
		out[i] = b.Seconds()
	}
	return out
}()

// topSeries keeps the limit largest counts of m as series and sums the
// rest into key "other"; it returns the kept keys in order, the other sum
// and how many keys were folded.
func topSeries(m map[string]uint64, limit int) (kept []detect.KeyCount, other uint64, folded int) {
	kept = detect.TopKeyCounts(m, len(m))
	if len(kept) > limit {
		for _, kc := range kept[limit:] {
			other += kc.Count
		}
		folded = len(kept) - limit
		kept = kept[:limit]
	}
	return kept, other, folded
}

// appendEventSeries appends the event series of a sample. Every series is
// a counter of what the programs counted since they were loaded; the top-K
// families rank by that count, so the set of kept keys changes only when a
// key overtakes another (and "other" may then drop: a counter reset to
// rate()). Each top-K family always has its "other" series, and
// tcpstate_connect_failures_total every reason, so that no family is
// missing before its first event.
func (e *Exporter) appendEventSeries(out []prometheus.Metric, pe partErrors, lv func(...string) []string, es *EventSample, listeners []detect.Listener) []prometheus.Metric {
	if es == nil || es.Records == nil {
		return out
	}
	ed := &e.ev
	add := func(d *prometheus.Desc, v uint64, l ...string) {
		m, err := prometheus.NewConstMetric(d, prometheus.CounterValue, float64(v), lv(l...)...)
		if err != nil {
			pe.add(PartEvents, err)
			return
		}
		out = append(out, m)
	}
	ns := es.Records
	var resetsRecv, retrans, synack uint64
	sent := map[string]uint64{}
	if es.BaseReason != "" {
		sent[es.BaseReason] = 0
	}
	fails := map[string]uint64{"refused": 0, "timeout": 0, "reset": 0, "unreachable": 0, "other": 0}
	opened := map[string]uint64{"active": 0, "passive": 0}
	closed := map[string]uint64{"active": 0, "passive": 0, "unknown": 0}
	lifetimes := map[string]*lifetimeHist{"active": {}, "passive": {}}
	for _, r := range ns.Totals {
		switch r.Kind {
		case events.KindResetSent:
			sent[SafeLabel(es.Reason(r.Code))] += r.Count
		case events.KindResetReceived:
			resetsRecv += r.Count
		case events.KindConnectFailure:
			fails[events.ConnectFailureReason(r.Code)] += r.Count
		case events.KindOpen:
			opened[events.Direction(r.Code).String()] += r.Count
		case events.KindClose:
			dir := events.Direction(r.Code).String()
			closed[dir] += r.Count
			if h := lifetimes[dir]; h != nil {
				h.add(&r.Value)
			}
		case events.KindRetransmit:
			retrans += r.Count
		case events.KindSynAckRetransmit:
			synack += r.Count
		}
	}
	for _, reason := range sortedKeys(sent) {
		add(ed.resetsSent, sent[reason], reason)
	}
	add(ed.resetsReceived, resetsRecv)
	for _, reason := range sortedKeys(fails) {
		add(ed.connectFailures, fails[reason], reason)
	}
	for _, dir := range sortedKeys(opened) {
		add(ed.opened, opened[dir], dir)
	}
	for _, dir := range sortedKeys(closed) {
		add(ed.closed, closed[dir], dir)
	}
	for _, dir := range sortedKeys(lifetimes) {
		m, err := lifetimes[dir].constHistogram(ed.lifetime, lv(dir))
		if err != nil {
			pe.add(PartEvents, err)
			continue
		}
		out = append(out, m)
	}
	add(ed.retransmits, retrans)
	add(ed.synackRetransmits, synack)

	listening := map[uint16]bool{}
	for _, l := range listeners {
		listening[l.Port] = true
	}
	type family struct {
		desc   *prometheus.Desc
		counts map[string]uint64
		split  func(key string) []string
		kind   string
	}
	one := func(k string) []string { return []string{k} }
	dstSplit := func(k string) []string {
		if k == "other" {
			return []string{"other", "other"}
		}
		ap, err := netip.ParseAddrPort(k)
		if err != nil {
			return []string{"other", "other"}
		}
		return []string{SafeLabel(ap.Addr().String()), strconv.Itoa(int(ap.Port()))}
	}
	lOpened, lClosed, lRetrans, lSynack := map[string]uint64{}, map[string]uint64{}, map[string]uint64{}, map[string]uint64{}
	dOpened, dClosed := map[string]uint64{}, map[string]uint64{}
	pRecv, pSent, pRetrans, pSynack := map[string]uint64{}, map[string]uint64{}, map[string]uint64{}, map[string]uint64{}
	// refused and timeout always, for TCPConnectFailures' rule.
	dFails := map[string]map[string]uint64{"refused": {}, "timeout": {}}
	for _, r := range ns.Details {
		port := strconv.Itoa(int(r.LocalPort))
		dst := netip.AddrPortFrom(r.Addr.Unmap(), r.RemotePort).String()
		switch r.Kind {
		case events.KindOpen, events.KindClose:
			lm, dm := lOpened, dOpened
			if r.Kind == events.KindClose {
				lm, dm = lClosed, dClosed
			}
			switch events.Direction(r.Code) {
			case events.DirectionPassive:
				lm[port] += r.Count
			case events.DirectionActive:
				dm[dst] += r.Count
			}
		case events.KindConnectFailure:
			reason := events.ConnectFailureReason(r.Code)
			if dFails[reason] == nil {
				dFails[reason] = map[string]uint64{}
			}
			dFails[reason][dst] += r.Count
		case events.KindResetReceived:
			pRecv[addrLabel(r.Addr)] += r.Count
		case events.KindResetSent:
			pSent[addrLabel(r.Addr)] += r.Count
		case events.KindRetransmit:
			pRetrans[addrLabel(r.Addr)] += r.Count
			if listening[r.LocalPort] {
				lRetrans[port] += r.Count
			}
		case events.KindSynAckRetransmit:
			pSynack[addrLabel(r.Addr)] += r.Count
			lSynack[port] += r.Count
		}
	}
	fams := []family{
		{ed.listenerOpened, lOpened, one, "event_listeners"},
		{ed.listenerClosed, lClosed, one, "event_listeners"},
		{ed.listenerRetrans, lRetrans, one, "event_listeners"},
		{ed.listenerSynack, lSynack, one, "event_listeners"},
		{ed.destOpened, dOpened, dstSplit, "event_destinations"},
		{ed.destClosed, dClosed, dstSplit, "event_destinations"},
		{ed.peerResetsRecv, pRecv, one, "event_peers"},
		{ed.peerResetsSent, pSent, one, "event_peers"},
		{ed.peerRetrans, pRetrans, one, "event_peers"},
		{ed.peerSynack, pSynack, one, "event_peers"},
	}
	for _, reason := range sortedKeys(dFails) {
		r := reason
		fams = append(fams, family{ed.destFailures, dFails[r], func(k string) []string { return append(dstSplit(k), r) }, "event_destinations"})
	}
	folded := map[string]int{"event_listeners": 0, "event_destinations": 0, "event_peers": 0}
	out, folded["event_lifetimes"] = e.appendLifetimeSeries(out, pe, lv, ns, dstSplit)
	for _, f := range fams {
		kept, other, n := topSeries(f.counts, e.opts.MaxEventSeries)
		for _, kc := range kept {
			add(f.desc, kc.Count, f.split(kc.Key)...)
		}
		// "other" is always there (0 when nothing was folded), so that
		// every family exists from the start.
		add(f.desc, other, f.split("other")...)
		folded[f.kind] += n
	}
	for _, k := range sortedKeys(folded) {
		m, err := prometheus.NewConstMetric(e.folded, prometheus.GaugeValue, float64(folded[k]), lv(k)...)
		if err != nil {
			pe.add(PartEvents, err)
			continue
		}
		out = append(out, m)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// String describes an EventSample for logs and tests.
func (es *EventSample) String() string {
	if es == nil || es.Records == nil {
		return "events off"
	}
	return fmt.Sprintf("%d totals, %d details", len(es.Records.Totals), len(es.Records.Details))
}
