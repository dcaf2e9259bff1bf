package main

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/events"
)

// snapshotEventRows bounds each table of the events section.
const snapshotEventRows = 10

// snapshotEvents is the snapshot's eBPF event source: loaded for the run
// (as --collector.events says), read once before the first dump and once
// per namespace at the end, so that the section counts what happened in
// between. A nil *snapshotEvents means events were not asked for.
type snapshotEvents struct {
	src *events.Source
	// why says, when src is nil, why the section is empty.
	why string
	// cookie is the namespace whose events a target without InNetns
	// shows; 0: this process's.
	cookie uint64

	start   *events.Snapshot
	startAt time.Time
	err     error
	// end is the read after the dumps, shared by every namespace's section
	// (one read of the maps, not one per namespace); endErr its failure.
	end    *events.Snapshot
	endAt  time.Time
	endErr error
}

// openSnapshotEvents loads the event programs for a snapshot: filtered to
// the namespace with the given cookie in the kernel, or every namespace for
// cookie 0 (--netns=all). mode is --collector.events; with "on" a failure
// to load is returned, with "auto" it is kept as the section's reason.
func openSnapshotEvents(mode string, cookie uint64) (*snapshotEvents, error) {
	if mode == "off" {
		return &snapshotEvents{why: "off (--collector.events=off)"}, nil
	}
	src, err := events.Open(events.SourceOptions{Netns: cookie})
	if err != nil {
		if mode == "on" {
			return nil, fmt.Errorf("--collector.events=on: %w", err)
		}
		return &snapshotEvents{why: "unavailable: " + collector.SafeLabel(err.Error())}, nil
	}
	return &snapshotEvents{src: src, cookie: cookie}, nil
}

// snapshotEventsFor is runSnapshot's hook: the event source for cfg, with
// the snapshot's own namespace as the filter in host mode.
func snapshotEventsFor(cfg *config) (*snapshotEvents, error) {
	var cookie uint64
	if cfg.netns != "all" && cfg.events != "off" {
		c, err := events.NetnsCookie()
		if err != nil {
			if cfg.events == "on" {
				return nil, fmt.Errorf("--collector.events=on: %w", err)
			}
			return &snapshotEvents{why: "unavailable: " + collector.SafeLabel(err.Error())}, nil
		}
		cookie = c
	}
	return openSnapshotEvents(cfg.events, cookie)
}

func (e *snapshotEvents) close() {
	if e != nil && e.src != nil {
		e.src.Close()
	}
}

// begin takes the first read, unless one was taken already.
func (e *snapshotEvents) begin() {
	if e == nil || e.src == nil || e.start != nil || e.err != nil {
		return
	}
	e.startAt = time.Now()
	e.start, e.err = e.src.Read()
}

// eventsSection is what the events section prints for one namespace.
type eventsSection struct {
	why    string // set when there is nothing else to print
	window time.Duration
	// reason names reset reason codes.
	reason func(uint32) string
	// rec holds the rises over the window, by key; tot the totals' rises.
	rec, tot []events.Record
	drops    events.Drops
}

// section returns the rises of the target's namespace between begin and
// the read after the dumps (taken by the first call).
func (e *snapshotEvents) section(t snapshotTarget) *eventsSection {
	if e == nil {
		return nil
	}
	if e.src == nil {
		return &eventsSection{why: e.why}
	}
	if e.err != nil {
		return &eventsSection{why: "unavailable: reading the eBPF maps: " + collector.SafeLabel(e.err.Error())}
	}
	cookie := e.cookie
	if t.InNetns != nil {
		err := t.InNetns(func() (err error) { cookie, err = events.NetnsCookie(); return err })
		if err != nil {
			return &eventsSection{why: "unavailable: " + collector.SafeLabel(err.Error())}
		}
	} else if cookie == 0 {
		c, err := events.NetnsCookie()
		if err != nil {
			return &eventsSection{why: "unavailable: " + collector.SafeLabel(err.Error())}
		}
		cookie = c
	}
	if e.end == nil && e.endErr == nil {
		e.end, e.endErr = e.src.Read()
		e.endAt = time.Now()
	}
	if e.endErr != nil {
		return &eventsSection{why: "unavailable: reading the eBPF maps: " + collector.SafeLabel(e.endErr.Error())}
	}
	end := e.end
	s := &eventsSection{window: e.endAt.Sub(e.startAt), reason: e.src.ResetReason}
	s.drops = events.Drops{
		Totals:  end.Drops.Totals - min(end.Drops.Totals, e.start.Drops.Totals),
		Details: end.Drops.Details - min(end.Drops.Details, e.start.Drops.Details),
		Storage: end.Drops.Storage - min(end.Drops.Storage, e.start.Drops.Storage),
	}
	var before, after events.Namespace
	if ns := e.start.Namespaces[cookie]; ns != nil {
		before = *ns
	}
	if ns := end.Namespaces[cookie]; ns != nil {
		after = *ns
	}
	s.tot = rises(before.Totals, after.Totals)
	s.rec = rises(before.Details, after.Details)
	return s
}

// rises returns the records of after whose count rose since before, with
// the rise as their value (counts and lifetimes).
func rises(before, after []events.Record) []events.Record {
	prev := make(map[events.Key]events.Value, len(before))
	for _, r := range before {
		prev[r.Key] = r.Value
	}
	var out []events.Record
	for _, r := range after {
		p := prev[r.Key]
		if r.Count <= p.Count {
			continue
		}
		d := events.Record{Key: r.Key}
		d.Count = r.Count - p.Count
		d.LifetimeSum = r.LifetimeSum - min(r.LifetimeSum, p.LifetimeSum)
		for i := range d.Lifetime {
			d.Lifetime[i] = r.Lifetime[i] - min(r.Lifetime[i], p.Lifetime[i])
		}
		out = append(out, d)
	}
	return out
}

// eventRow is one row of an events table.
type eventRow struct {
	cols  []string
	count uint64
}

// topRows sums counts by the columns key returns (nil: skip the record)
// and returns the rows, largest first.
func topRows(recs []events.Record, kind events.Kind, key func(events.Record) []string) []eventRow {
	idx := map[string]int{}
	var rows []eventRow
	for _, r := range recs {
		if r.Kind != kind {
			continue
		}
		cols := key(r)
		if cols == nil {
			continue
		}
		k := fmt.Sprint(cols)
		i, ok := idx[k]
		if !ok {
			i = len(rows)
			idx[k] = i
			rows = append(rows, eventRow{cols: cols})
		}
		rows[i].count += r.Count
	}
	sortEventRows(rows)
	return rows
}

// sortEventRows orders rows largest first, then by their columns.
func sortEventRows(rows []eventRow) {
	slices.SortFunc(rows, func(a, b eventRow) int {
		if c := cmp.Compare(b.count, a.count); c != 0 {
			return c
		}
		return slices.Compare(a.cols, b.cols)
	})
}

func peerString(a netip.Addr) string {
	if !a.IsValid() {
		return "-"
	}
	return collector.SafeLabel(a.Unmap().String())
}

// servicePort is the port that names the service of a detail key: the
// remote port when recorded (connections this host opened), else the local
// one; "-" when neither was.
func servicePort(r events.Record) string {
	switch {
	case r.RemotePort != 0:
		return strconv.Itoa(int(r.RemotePort))
	case r.LocalPort != 0:
		return strconv.Itoa(int(r.LocalPort))
	}
	return "-"
}

// writeEvents prints the events section: nothing when events were not
// asked for, one line when they are off or unavailable.
func (s *snapshot) writeEvents(w io.Writer) error {
	e := s.Events
	if e == nil {
		return nil
	}
	if e.why != "" {
		_, err := fmt.Fprintf(w, "\nConnection events (eBPF): %s\n", e.why)
		return err
	}
	sum := func(kind events.Kind, code func(uint32) bool) uint64 {
		var n uint64
		for _, r := range e.tot {
			if r.Kind == kind && (code == nil || code(r.Code)) {
				n += r.Count
			}
		}
		return n
	}
	dir := func(d events.Direction) func(uint32) bool {
		return func(c uint32) bool { return events.Direction(c) == d }
	}
	fmt.Fprintf(w, "\nConnection events over the last %v (eBPF)\n", e.window.Round(time.Millisecond))
	fmt.Fprintf(w, "Opened: %d active, %d passive; closed: %d active, %d passive, %d opened before the programs loaded\n",
		sum(events.KindOpen, dir(events.DirectionActive)), sum(events.KindOpen, dir(events.DirectionPassive)),
		sum(events.KindClose, dir(events.DirectionActive)), sum(events.KindClose, dir(events.DirectionPassive)),
		sum(events.KindClose, dir(events.DirectionUnknown)))
	fmt.Fprintf(w, "Resets sent: %d; received: %d; connect failures: %d; retransmitted segments: %d, SYN-ACKs: %d\n",
		sum(events.KindResetSent, nil), sum(events.KindResetReceived, nil), sum(events.KindConnectFailure, nil),
		sum(events.KindRetransmit, nil), sum(events.KindSynAckRetransmit, nil))
	if d := e.drops; d != (events.Drops{}) {
		fmt.Fprintf(w, "Events lost to full maps: %d of the totals, %d of the details; %d opening times not stored\n", d.Totals, d.Details, d.Storage)
	}
	tables := []struct {
		title string
		head  string
		rows  []eventRow
	}{
		{"Resets sent by reason", "REASON\tCOUNT", topRows(e.tot, events.KindResetSent, func(r events.Record) []string {
			return []string{collector.SafeLabel(e.reason(r.Code))}
		})},
		{"Resets sent by peer", "REMOTE_ADDRESS\tLOCAL_PORT\tREASON\tCOUNT", topRows(e.rec, events.KindResetSent, func(r events.Record) []string {
			lp := "-"
			if r.LocalPort != 0 {
				lp = strconv.Itoa(int(r.LocalPort))
			}
			return []string{peerString(r.Addr), lp, collector.SafeLabel(e.reason(r.Code))}
		})},
		{"Resets received by peer", "REMOTE_ADDRESS\tPORT\tCOUNT", topRows(e.rec, events.KindResetReceived, func(r events.Record) []string {
			return []string{peerString(r.Addr), servicePort(r)}
		})},
		{"Connect failures by destination", "DESTINATION\tREASON\tCOUNT", topRows(e.rec, events.KindConnectFailure, func(r events.Record) []string {
			return []string{collector.SafeLabel(netip.AddrPortFrom(r.Addr.Unmap(), r.RemotePort).String()), events.ConnectFailureReason(r.Code)}
		})},
		{"Connections opened and closed by destination (active)", "DESTINATION\tEVENT\tCOUNT", append(
			topRows(e.rec, events.KindOpen, activeDest("opened")), topRows(e.rec, events.KindClose, activeDest("closed"))...)},
		{"Connections opened and closed by listener port (passive)", "PORT\tEVENT\tCOUNT", append(
			topRows(e.rec, events.KindOpen, passivePort("opened")), topRows(e.rec, events.KindClose, passivePort("closed"))...)},
		{"Retransmitted segments by peer", "REMOTE_ADDRESS\tPORT\tCOUNT", topRows(e.rec, events.KindRetransmit, func(r events.Record) []string {
			return []string{peerString(r.Addr), servicePort(r)}
		})},
		{"SYN-ACKs retransmitted by listener port", "PORT\tREMOTE_ADDRESS\tCOUNT", topRows(e.rec, events.KindSynAckRetransmit, func(r events.Record) []string {
			return []string{strconv.Itoa(int(r.LocalPort)), peerString(r.Addr)}
		})},
	}
	for _, t := range tables {
		if len(t.rows) == 0 {
			fmt.Fprintf(w, "%s: none\n", t.title)
			continue
		}
		// Tables made of two kinds (opened and closed) are ordered as one
		// before they are cut to snapshotEventRows.
		sortEventRows(t.rows)
		fmt.Fprintf(w, "%s:\n", t.title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "  %s\n", t.head)
		for _, r := range t.rows[:min(len(t.rows), snapshotEventRows)] {
			fmt.Fprint(tw, "  ")
			for _, c := range r.cols {
				fmt.Fprintf(tw, "%s\t", c)
			}
			fmt.Fprintf(tw, "%d\n", r.count)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if more := len(t.rows) - snapshotEventRows; more > 0 {
			fmt.Fprintf(w, "  ... and %d more\n", more)
		}
	}
	return nil
}

// activeDest keys connections this host opened by destination.
func activeDest(event string) func(events.Record) []string {
	return func(r events.Record) []string {
		if events.Direction(r.Code) != events.DirectionActive {
			return nil
		}
		return []string{collector.SafeLabel(netip.AddrPortFrom(r.Addr.Unmap(), r.RemotePort).String()), event}
	}
}

// passivePort keys accepted connections by their listener's port.
func passivePort(event string) func(events.Record) []string {
	return func(r events.Record) []string {
		if events.Direction(r.Code) != events.DirectionPassive {
			return nil
		}
		return []string{strconv.Itoa(int(r.LocalPort)), event}
	}
}
