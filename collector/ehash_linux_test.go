//go:build linux

package collector_test

import (
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/netns"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// The cheap path reports whether a namespace's established hash is its
// own: where the budget holds dumps back for minutes (100 namespaces on a
// shared hash), tcpstate_netns_private_ehash must not wait for one.
func TestListenSampleReadsEhash(t *testing.T) {
	if _, err := os.Stat("/proc/sys/net/ipv4/tcp_ehash_entries"); err != nil {
		t.Skip("the kernel has no net.ipv4.tcp_ehash_entries (Linux 6.1+): ", err)
	}
	h := openHandle(t, fixture.NewNetnsPrefix(t, "tehl-"))
	s := collector.NewSampler(collector.SamplerOptions{Interval: time.Second, Dial: h.Dial, InNetns: h.Do,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer s.Close()
	if _, err := s.Sample(collector.Listen); err != nil {
		t.Fatal(err)
	}
	v := s.View(time.Now())
	if v.Full != nil || v.Rare != nil {
		t.Fatal("a dump ran: the test needs the cheap path alone")
	}
	if !v.EhashKnown || v.Ehash.Entries <= 0 {
		t.Errorf("after a cheap sample: ehash known %v, %+v; want the namespace's table", v.EhashKnown, v.Ehash)
	}
	t.Logf("established hash of a new namespace after one cheap sample: %+v", v.Ehash)
}

// openHandle opens ns as --netns=all does (netns.Open), closed at the
// test's end.
func openHandle(t *testing.T, ns *fixture.Netns) *netns.Handle {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(ns.Path(), &st); err != nil {
		t.Fatal(err)
	}
	h, err := netns.Open(netns.Namespace{Key: netns.Key{Dev: uint64(st.Dev), Inode: st.Ino}, Path: ns.Path()}, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
