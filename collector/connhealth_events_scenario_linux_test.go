//go:build linux

package collector_test

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/events"
)

// TestScenarioPeerUnresponsiveEvents is TestScenarioPeerUnresponsive with
// the eBPF event source on (filtered to the client's namespace): the
// finding fires as before, and its evidence counts the segments the client
// retransmitted towards the blackholed server, at least as many as the
// consecutive RTO retransmissions the dump saw on one socket.
func TestScenarioPeerUnresponsiveEvents(t *testing.T) {
	server, client := pairNetns(t)
	var cookie uint64
	if err := client.Do(func() (err error) { cookie, err = events.NetnsCookie(); return err }); err != nil {
		t.Fatal(err)
	}
	if err := events.Check(); err != nil {
		t.Fatalf("the event programs cannot load here (run as root on a kernel with BTF): %v", err)
	}
	src, err := events.Open(events.SourceOptions{Netns: cookie})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	reader := collector.NewEventReader(src, slog.New(slog.NewTextHandler(io.Discard, nil)))

	l := listenGo(t, server, netip.AddrPortFrom(chServer, 0).String(), nil)
	cs := dialFrom(t, client, netip.Addr{}, l, 5)
	w, _ := watchWith(t, client, collector.SamplerOptions{Detect: detect.DefaultConfig(), Events: reader})
	writeEvery(t, cs, 1024, 100*time.Millisecond)
	begin := time.Now()
	w.waitEvals(begin, 4, 15*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := server.IP(ctx, "route", "add", "blackhole", chClient.String()+"/32"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	unresponsive := alertWith(detect.AlertPeerUnresponsive, map[string]string{"remote_address": chServer.String(), "family": "ipv4"})
	_, f, ok := w.waitFor(start, unresponsive, 15*time.Second)
	if !ok {
		t.Fatalf("no TCPPeerUnresponsive for %v within 15 s of the blackhole", chServer)
	}
	t.Logf("evidence %v", f.Evidence)
	maxRetrans, err := strconv.Atoi(f.Evidence["max_retransmissions"])
	if err != nil || maxRetrans < 4 {
		t.Fatalf("max_retransmissions = %q, want at least 4", f.Evidence["max_retransmissions"])
	}
	win, err := strconv.Atoi(f.Evidence["retransmitted_segments_window"])
	if err != nil || win < maxRetrans {
		t.Errorf("retransmitted_segments_window = %q, want a count of at least %d (the RTO retransmissions of one socket)", f.Evidence["retransmitted_segments_window"], maxRetrans)
	}
	if _, err := strconv.Atoi(f.Evidence["retransmitted_segments_last_interval"]); err != nil {
		t.Errorf("retransmitted_segments_last_interval = %q, want a count", f.Evidence["retransmitted_segments_last_interval"])
	}
	if f.Evidence["retransmitted_segments_window_span"] == "" {
		t.Errorf("no retransmitted_segments_window_span in %v", f.Evidence)
	}
}
