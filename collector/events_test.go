package collector

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/events"
)

// fakeEvents is an EventSource over records held in memory.
type fakeEvents struct {
	ns     map[uint64]*events.Namespace
	err    error
	reads  int
	pruned []uint64
}

func (f *fakeEvents) Read() (*events.Snapshot, error) {
	f.reads++
	if f.err != nil {
		return nil, f.err
	}
	s := &events.Snapshot{Namespaces: map[uint64]*events.Namespace{}}
	for c, n := range f.ns {
		cp := *n
		s.Namespaces[c] = &cp
	}
	return s, nil
}

func (f *fakeEvents) Prune(keep func(uint64) bool) (int, error) {
	n := 0
	for c, ns := range f.ns {
		if !keep(c) {
			f.pruned = append(f.pruned, c)
			n += len(ns.Totals) + len(ns.Details)
			delete(f.ns, c)
		}
	}
	return n, nil
}

func (f *fakeEvents) HasResetReason() bool { return true }

func (f *fakeEvents) ResetReason(code uint32) string {
	if code == 1 {
		return "no_socket"
	}
	return fmt.Sprintf("reason_%d\x07", code) // a control character SafeLabel replaces
}

func rec(kind events.Kind, code uint32, addr string, lport, rport uint16, count uint64) events.Record {
	k := events.Key{Netns: 7, Kind: kind, Code: code, LocalPort: lport, RemotePort: rport}
	if addr != "" {
		k.Addr = netip.MustParseAddr(addr)
	}
	return events.Record{Key: k, Value: events.Value{Count: count}}
}

func TestEventReaderSharesReadsAndPrunes(t *testing.T) {
	src := &fakeEvents{ns: map[uint64]*events.Namespace{
		7: {Totals: []events.Record{rec(events.KindResetReceived, 0, "", 0, 0, 3)}},
		9: {Totals: []events.Record{rec(events.KindResetReceived, 0, "", 0, 0, 1)}},
	}}
	r := NewEventReader(src, nil)
	now := time.Unix(1000, 0)
	ns, err := r.namespace(7, now)
	if err != nil || ns.Total(events.KindResetReceived) != 3 {
		t.Fatalf("namespace 7: %+v, %v", ns, err)
	}
	if r.stats.totals != 2 || r.stats.details != 0 {
		t.Errorf("map entries totals %d details %d, want 2 and 0", r.stats.totals, r.stats.details)
	}
	// A second sampler within reuseFor shares the read.
	if _, err := r.namespace(8, now.Add(100*time.Millisecond)); err != nil || src.reads != 1 {
		t.Fatalf("reads %d, err %v; want one shared read", src.reads, err)
	}
	// Namespace 9 is never asked for: pruned once pruneAfter has passed,
	// while 7, asked for all along, stays.
	for ts := now; ts.Before(now.Add(r.pruneAfter + 2*time.Minute)); ts = ts.Add(30 * time.Second) {
		before := len(src.pruned)
		if _, err := r.namespace(7, ts); err != nil {
			t.Fatal(err)
		}
		// The read that prunes counts what the maps hold after it.
		if before == 0 && len(src.pruned) == 1 && r.stats.totals != 1 {
			t.Errorf("map entries totals %d after pruning namespace 9, want 1", r.stats.totals)
		}
	}
	if len(src.pruned) != 1 || src.pruned[0] != 9 {
		t.Errorf("pruned %v, want [9]", src.pruned)
	}
	if _, ok := src.ns[7]; !ok {
		t.Error("namespace 7 was pruned while asked for")
	}
	// A read error: reported, counted, and nothing returned.
	src.err = errors.New("boom")
	if _, err := r.namespace(7, now.Add(time.Hour)); err == nil {
		t.Error("read error not returned")
	}
	if r.stats.readErrors != 1 {
		t.Errorf("read errors %d, want 1", r.stats.readErrors)
	}
}

func TestEventSummaryRises(t *testing.T) {
	se := &samplerEvents{}
	ns := &events.Namespace{
		Totals: []events.Record{rec(events.KindResetSent, 1, "", 0, 0, 5), rec(events.KindConnectFailure, 111, "", 0, 0, 4)},
		Details: []events.Record{
			rec(events.KindResetSent, 1, "10.0.0.2", 8080, 40000, 5),
			rec(events.KindResetReceived, 0, "10.0.0.3", 40001, 443, 2),
			rec(events.KindConnectFailure, 111, "10.0.0.4", 0, 5432, 4),
			rec(events.KindRetransmit, 0, "10.0.0.5", 0, 443, 6),
			rec(events.KindRetransmit, 0, "10.0.0.5", 8080, 0, 1),
		},
	}
	src := &fakeEvents{}
	ev := se.summarize(ns, src.ResetReason)
	if ev.ResetsSent["no_socket"] != 5 || ev.ConnectFailures["refused"] != 4 {
		t.Errorf("totals %+v", ev)
	}
	if len(ev.ConnectFailuresTo) != 1 || ev.ConnectFailuresTo[0] != (detect.ConnectFailure{Destination: "10.0.0.4:5432", Reason: "refused", Count: 4}) {
		t.Errorf("connect failures %+v", ev.ConnectFailuresTo)
	}
	if len(ev.RetransmitsTo) != 1 || ev.RetransmitsTo[0] != (detect.KeyCount{Key: "10.0.0.5", Count: 7}) {
		t.Errorf("retransmissions by peer %+v, want 10.0.0.5 (7)", ev.RetransmitsTo)
	}
	// The next sample sees only what rose.
	ns.Details[0].Count = 8
	ns.Details[3].Count = 10
	ev = se.summarize(ns, src.ResetReason)
	if len(ev.ResetsSentTo) != 1 || ev.ResetsSentTo[0].Count != 3 || ev.ResetsSentFrom[0].Key != "8080" {
		t.Errorf("rises: sent to %+v, from %+v", ev.ResetsSentTo, ev.ResetsSentFrom)
	}
	if len(ev.RetransmitsTo) != 1 || ev.RetransmitsTo[0].Count != 4 {
		t.Errorf("retransmission rises %+v, want 10.0.0.5 (4)", ev.RetransmitsTo)
	}
	if len(ev.ResetsReceivedFrom) != 0 || len(ev.ConnectFailuresTo) != 0 {
		t.Errorf("unchanged entries reported as rises: %+v %+v", ev.ResetsReceivedFrom, ev.ConnectFailuresTo)
	}
}

// TestEventSeriesBounded checks the top-K fold of event series and the
// label sanitising of BPF-derived values.
func TestEventSeriesBounded(t *testing.T) {
	ns := &events.Namespace{Totals: []events.Record{rec(events.KindResetSent, 99, "", 0, 0, 1)}}
	for i := range 30 {
		ns.Details = append(ns.Details, rec(events.KindResetReceived, 0, fmt.Sprintf("10.0.0.%d", i+1), 1000, 443, uint64(i+1)))
	}
	e := NewExporter(func() []Target { return nil }, ExporterOptions{MaxEventSeries: 5})
	src := &fakeEvents{}
	pe := partErrors{}
	out := e.appendEventSeries(nil, pe, func(l ...string) []string { return l }, &EventSample{Records: ns, Reason: src.ResetReason}, nil)
	var peers, other float64
	var kept []string
	for _, m := range out {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		desc := m.Desc().String()
		labels := map[string]string{}
		for _, l := range pb.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if strings.Contains(desc, "tcpstate_resets_sent_total") && labels["reason"] != SafeLabel("reason_99\x07") {
			t.Errorf("reason label %q, want the control character replaced as SafeLabel does", labels["reason"])
		}
		if !strings.Contains(desc, "tcpstate_peer_resets_received_total") {
			continue
		}
		peers++
		if labels["remote_address"] == "other" {
			other = pb.GetCounter().GetValue()
		} else {
			kept = append(kept, labels["remote_address"])
		}
	}
	if peers != 6 || len(kept) != 5 || kept[0] != "10.0.0.30" {
		t.Errorf("peer series %v (kept %v), want the 5 largest and other", peers, kept)
	}
	// 1+2+...+25 folded.
	if other != 325 {
		t.Errorf("other %v, want 325", other)
	}
	if len(pe[PartEvents]) != 0 {
		t.Errorf("event series failed to build: %v", pe[PartEvents])
	}
}
