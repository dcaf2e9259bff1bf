//go:build linux

package netns

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// expectCounts returns the per-family, per-state counts a spec produces.
func expectCounts(s sockSpec) collector.Counts {
	var c collector.Counts
	fi := 0
	if s.V6 {
		fi = 1
	}
	c[fi][diag.Listen] = uint64(s.listeners())
	c[fi][diag.Established] = uint64(2 * s.Pairs)
	return c
}

// diffCounts describes where two Counts differ, "" when equal.
func diffCounts(got, want collector.Counts) string {
	var d []string
	for fi, f := range collector.Families {
		for _, st := range collector.States {
			if got[fi][st] != want[fi][st] {
				d = append(d, fmt.Sprintf("%v/%v %d want %d", f, st, got[fi][st], want[fi][st]))
			}
		}
	}
	return strings.Join(d, ", ")
}

// TestManagerRealNamespaces is the multi-namespace run: four namespaces,
// each with a process holding known sockets, sampled by a Manager with
// real Samplers. It checks exact per-namespace counts and pod attribution,
// then deletes one namespace mid-run: first its bind mount (the namespace
// lives on in its process and stays sampled), then its process. The
// namespace must be dropped and counted, with nothing logged and no
// descriptor left behind.
func TestManagerRealNamespaces(t *testing.T) {
	warmUp(t)
	specs := []sockSpec{
		{Path: "-", Listen: 3, Pairs: 5},
		{Path: "-", Listen: 1, Pairs: 10, V6: true},
		{Path: "-", Pairs: 20},
		{Path: "-", Listen: 2, Pairs: 7},
	}
	names := make([]string, len(specs))
	nss := make([]*fixture.Netns, len(specs))
	labels := make([]string, len(specs))
	helpers := make([]*helper, len(specs))
	for i, s := range specs {
		nss[i] = newNamedNetns(t)
		names[i] = nss[i].Name()
		labels[i] = strconv.FormatUint(inodeOf(t, "/run/netns/"+names[i]), 10)
		helpers[i] = startHelper(t, names[i], s)
	}
	const victim = 3
	podOf := map[int]string{helpers[0].pid(): "uid-0", helpers[victim].pid(): "uid-3"}
	podNames := map[string][2]string{"uid-0": {"shop", "web-0"}, "uid-3": {"shop", "worker-3"}}

	before := openFDs(t)
	rec := &fixture.LogRecorder{}
	logger := slog.New(rec)
	m, err := NewManager(ManagerOptions{
		Refresh:   300 * time.Millisecond,
		Interval:  50 * time.Millisecond,
		CPUBudget: 0.5,
		Logger:    logger,
		NewSampler: func(h *Handle) (*collector.Sampler, error) {
			return collector.NewSampler(collector.SamplerOptions{Interval: 50 * time.Millisecond, Dial: h.Dial, InNetns: h.Do, Logger: logger}), nil
		},
		PodUID: func(pid int) string { return podOf[pid] },
		PodName: func(uid string) (string, string, bool) {
			p, ok := podNames[uid]
			return p[0], p[1], ok
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	bg := fixture.Background(t, "Manager.Run", m.Run)
	defer bg.Stop(fixture.DefaultStopGrace)

	// checkAll waits until every namespace in idx reports exactly its
	// sockets from a full dump newer than since.
	checkAll := func(idx []int, since time.Time) {
		t.Helper()
		waitFor(t, 20*time.Second, "exact counts in every namespace", func() (bool, string) {
			ts := targetsByNetns(m.Targets())
			if _, ok := ts[collector.HostTarget]; !ok {
				return false, "no host target"
			}
			for _, i := range idx {
				tg, ok := ts[labels[i]]
				if !ok {
					return false, "no target for " + names[i]
				}
				v := tg.Sampler.View(time.Now())
				if v.Full == nil || v.Full.Time.Before(since) {
					return false, names[i] + ": no fresh full sample"
				}
				if d := diffCounts(v.Counts, expectCounts(specs[i])); d != "" {
					return false, names[i] + ": " + d
				}
				want := []string{labels[i], "", ""}
				if p, ok := podNames[podOf[helpers[i].pid()]]; ok {
					want = []string{labels[i], p[0], p[1]}
				}
				if !slices.Equal(tg.Labels, want) {
					return false, fmt.Sprintf("%s: labels %v, want %v", names[i], tg.Labels, want)
				}
			}
			return true, ""
		})
	}
	checkAll([]int{0, 1, 2, 3}, time.Time{})
	t.Logf("all %d namespaces exact; stats %+v", len(specs), m.Stats())

	// Remove the bind mount: the process still holds the namespace, so it
	// is still found (through /proc) and still sampled.
	if err := nss[victim].Delete(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond) // two discoveries
	checkAll([]int{0, 1, 2, 3}, time.Now())
	if d := m.Stats().Dropped; d != 0 {
		t.Logf("%d namespaces dropped meanwhile (other tests on the machine)", d)
	}
	dropped := m.Stats().Dropped

	// The process exits: the namespace is gone.
	helpers[victim].stop()
	waitFor(t, 10*time.Second, "the deleted namespace dropped", func() (bool, string) {
		_, still := targetsByNetns(m.Targets())[labels[victim]]
		return !still, fmt.Sprintf("%+v", m.Stats())
	})
	if st := m.Stats(); st.Dropped <= dropped {
		t.Errorf("Dropped %d, want more than %d", st.Dropped, dropped)
	}
	netLink := "net:[" + labels[victim] + "]"
	for fd, l := range openFDs(t) {
		if l == netLink {
			t.Errorf("descriptor %s still open on the deleted namespace", fd)
		}
	}
	// The others are still sampled, exactly.
	checkAll([]int{0, 1, 2}, time.Now())

	if !bg.Stop(fixture.DefaultStopGrace) {
		t.FailNow()
	}
	checkNoLeak(t, before)
	if r := rec.Records(); len(r) > 0 {
		t.Errorf("warnings or errors logged: %q", r)
	}
	st := m.Stats()
	t.Logf("final stats %+v", st)
}
