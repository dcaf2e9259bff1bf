package collector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tcpstate/tcpstate-exporter/events"
)

// TestLifetimeSeriesBounded gives 8 listener ports and 8 destinations
// closed connections (port i: i connections of 2 ms each) and expects, with
// a limit of 3, the 3 busiest of each as histograms and the other 5 summed
// into "other", buckets and sums included, with 10 folded.
func TestLifetimeSeriesBounded(t *testing.T) {
	ns := &events.Namespace{}
	for i := 1; i <= 8; i++ {
		v := events.Value{Count: uint64(i), LifetimeSum: time.Duration(i) * 2 * time.Millisecond}
		v.Lifetime[1] = uint64(i) // (1ms, 5ms]
		p := rec(events.KindClose, uint32(events.DirectionPassive), "", uint16(8000+i), 0, 0)
		p.Value = v
		a := rec(events.KindClose, uint32(events.DirectionActive), fmt.Sprintf("10.0.0.%d", i), 0, 443, 0)
		a.Value = v
		ns.Details = append(ns.Details, p, a)
	}
	// Unknown direction: no lifetime, in neither family.
	ns.Details = append(ns.Details, rec(events.KindClose, uint32(events.DirectionUnknown), "", 0, 0, 50))
	e := NewExporter(func() []Target { return nil }, ExporterOptions{MaxLifetimeSeries: 3})
	pe := partErrors{}
	out := e.appendEventSeries(nil, pe, func(l ...string) []string { return l }, &EventSample{Records: ns, Reason: (&fakeEvents{}).ResetReason}, nil)
	type hist struct {
		count uint64
		sum   float64
		le5ms uint64
	}
	listeners, dests := map[string]hist{}, map[string]hist{}
	var folded float64
	for _, m := range out {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{}
		for _, l := range pb.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		desc := m.Desc().String()
		h := pb.GetHistogram()
		var le5 uint64
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == 0.005 {
				le5 = b.GetCumulativeCount()
			}
		}
		switch {
		case strings.Contains(desc, `"tcpstate_listener_connection_lifetime_seconds"`):
			listeners[labels["port"]] = hist{h.GetSampleCount(), h.GetSampleSum(), le5}
		case strings.Contains(desc, `"tcpstate_destination_connection_lifetime_seconds"`):
			dests[labels["remote_address"]+":"+labels["remote_port"]] = hist{h.GetSampleCount(), h.GetSampleSum(), le5}
		case strings.Contains(desc, `"tcpstate_folded_series"`) && labels["kind"] == "event_lifetimes":
			folded = pb.GetGauge().GetValue()
		}
	}
	const otherN = 1 + 2 + 3 + 4 + 5
	wantL := map[string]hist{
		"8008": {8, 0.016, 8}, "8007": {7, 0.014, 7}, "8006": {6, 0.012, 6},
		"other": {otherN, 2 * otherN / 1000.0, otherN},
	}
	wantD := map[string]hist{
		"10.0.0.8:443": {8, 0.016, 8}, "10.0.0.7:443": {7, 0.014, 7}, "10.0.0.6:443": {6, 0.012, 6},
		"other:other": {otherN, 2 * otherN / 1000.0, otherN},
	}
	for name, c := range map[string]struct{ got, want map[string]hist }{"listener": {listeners, wantL}, "destination": {dests, wantD}} {
		if len(c.got) != len(c.want) {
			t.Errorf("%s histograms %v, want %v", name, c.got, c.want)
		}
		for k, w := range c.want {
			g := c.got[k]
			if g.count != w.count || g.le5ms != w.le5ms || g.sum < w.sum-1e-9 || g.sum > w.sum+1e-9 {
				t.Errorf("%s %s: %+v, want %+v", name, k, g, w)
			}
		}
	}
	if folded != 10 {
		t.Errorf("folded lifetime series %v, want 10", folded)
	}
	if len(pe[PartEvents]) != 0 {
		t.Errorf("event series failed to build: %v", pe[PartEvents])
	}
}
