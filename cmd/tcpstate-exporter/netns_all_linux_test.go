//go:build linux

package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// TestNetnsAllExactPerNamespace runs the exporter with --netns=all and
// checks, per namespace label, the exact counts the fixture made in three
// namespaces; then one namespace is deleted mid-run: its series go, the drop
// is counted, nothing is logged as an error, and the exporter keeps no
// descriptor on it.
func TestNetnsAllExactPerNamespace(t *testing.T) {
	bin := exporterBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	agentNS := fixture.NewNetnsPrefix(t, "tsna-")
	var nss []*fixture.Netns
	want := map[string]fixture.Counts{} // netns label -> counts
	var sets [][]*fixture.Set
	for i, build := range []func(ns *fixture.Netns) ([]*fixture.Set, error){
		func(ns *fixture.Netns) ([]*fixture.Set, error) {
			l, err := ns.Listen(ctx, fixture.IPv4, 2)
			if err != nil {
				return nil, err
			}
			e, err := ns.Established(ctx, fixture.IPv4, 3)
			return []*fixture.Set{l, e}, err
		},
		func(ns *fixture.Netns) ([]*fixture.Set, error) {
			l, err := ns.Listen(ctx, fixture.IPv6, 4)
			return []*fixture.Set{l}, err
		},
		func(ns *fixture.Netns) ([]*fixture.Set, error) {
			l, err := ns.Listen(ctx, fixture.IPv4, 5)
			return []*fixture.Set{l}, err
		},
	} {
		ns := fixture.NewNetnsPrefix(t, "tsna-")
		ss, err := build(ns)
		if err != nil {
			t.Fatalf("namespace %d: %v", i, err)
		}
		ino, err := ns.Inode()
		if err != nil {
			t.Fatal(err)
		}
		var c fixture.Counts
		for _, s := range ss {
			c = c.Add(s.ExpectedIn(ns))
			t.Cleanup(func() { s.Close() })
		}
		want[strconv.FormatUint(ino, 10)] = c
		nss = append(nss, ns)
		sets = append(sets, ss)
	}

	p := startExporter(t, ctx, agentNS, bin, nil, "--web.listen-address="+exporterAddr, "--netns=all", "--netns.refresh=1s")
	client := &http.Client{Timeout: 5 * time.Second, Transport: nsTransport(agentNS, nil)}
	waitReady(t, p, client, "http://"+exporterAddr, "", "")

	// perNetns reads tcpstate_sockets into netns label -> counts.
	perNetns := func() (map[string]fixture.Counts, map[string]*dto.MetricFamily) {
		_, mfs := scrape(t, client)
		got := map[string]fixture.Counts{}
		for _, m := range mfs["tcpstate_sockets"].GetMetric() {
			l := labelsOf(m)
			for _, st := range fixture.States() {
				if st.String() == l["state"] {
					c := got[l["netns"]]
					c[st] += int(m.GetGauge().GetValue())
					got[l["netns"]] = c
				}
			}
		}
		return got, mfs
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, _ := perNetns()
		ok := true
		for label, w := range want {
			if got[label] != w {
				ok = false
				if time.Now().After(deadline) {
					t.Errorf("netns %s: exporter says %v, fixture made %v", label, got[label], w)
				}
			}
		}
		if ok || time.Now().After(deadline) {
			if ok {
				t.Logf("exact per-namespace counts: %v", want)
			}
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if t.Failed() {
		return
	}

	// Delete the third namespace: close its sockets, then the namespace.
	gone := nss[2]
	goneIno, _ := gone.Inode()
	goneLabel := strconv.FormatUint(goneIno, 10)
	for _, s := range sets[2] {
		s.Close()
	}
	if err := gone.Delete(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		got, mfs := perNetns()
		_, present := got[goneLabel]
		dropped := 0.0
		if mf := mfs["tcpstate_netns_dropped_total"]; mf != nil && len(mf.GetMetric()) > 0 {
			dropped = mf.GetMetric()[0].GetCounter().GetValue()
		}
		if !present && dropped >= 1 {
			for label, w := range want {
				if label != goneLabel && got[label] != w {
					t.Errorf("after the deletion, netns %s: %v, want %v", label, got[label], w)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after deleting netns %s: still reported %v, tcpstate_netns_dropped_total %v", goneLabel, present, dropped)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// No descriptor of the exporter still refers to the deleted namespace.
	fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p.Cmd.Process.Pid), "fd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(p.Cmd.Process.Pid), "fd", fd.Name()))
		if target == "net:["+goneLabel+"]" {
			t.Errorf("exporter descriptor %s still holds the deleted namespace", fd.Name())
		}
	}
	if logs := p.Logs.String(); strings.Contains(logs, "level=ERROR") {
		t.Errorf("errors logged:\n%s", logs)
	}
}
