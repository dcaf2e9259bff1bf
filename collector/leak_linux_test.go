//go:build linux

package collector_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// Leak test bounds. The kernel walks every namespace's established sockets
// for each dump, so a busy host makes dumps slower: the test stops at
// leakTimeLimit and checks what it ran, as long as that is at least
// leakMinCycles.
const (
	leakCycles     = 10000
	leakMinCycles  = 2000
	leakWarmup     = 200
	leakTimeLimit  = 4 * time.Minute
	leakFaultEvery = 50 // cycles between rounds of forced failures
)

// Slack allowed between the warmed-up baseline and the end.
const (
	leakGoroutineSlack = 2
	leakFDSlack        = 2
	leakThreadSlack    = 8
	leakHeapSlack      = 1 << 20 // 1 MiB: 100 bytes per cycle over 10000 cycles
)

// errForced marks the failures the test injects.
var errForced = errors.New("tsh6: forced failure")

// faultTransport wraps a real netlink transport and fails the first
// Receive of a dump when armed, leaving the kernel's reply unread.
type faultTransport struct {
	diag.Transport
	f *faults
}

func (t *faultTransport) Receive(b []byte) (int, bool, error) {
	if t.f.failReceive {
		t.f.failReceive = false
		t.f.receiveFailures++
		return 0, false, fmt.Errorf("receive: %w", errForced)
	}
	return t.Transport.Receive(b)
}

func (t *faultTransport) Close() error {
	t.f.closes++
	return t.Transport.Close()
}

// faults is the test's switchboard. The sampler is driven from the test
// goroutine only, so it needs no lock.
type faults struct {
	failReceive, failDial         bool
	dials, dialFailures           int
	receiveFailures, closesByTest int
	closes                        int // transports closed
}

// leakSnapshot is what the test watches for growth.
type leakSnapshot struct {
	goroutines int
	fds        int
	threads    int
	heap       uint64 // HeapAlloc after two GCs
}

func (s leakSnapshot) String() string {
	return fmt.Sprintf("goroutines %d, fds %d, threads %d, heap %d KiB", s.goroutines, s.fds, s.threads, s.heap>>10)
}

func takeLeakSnapshot(t *testing.T) leakSnapshot {
	t.Helper()
	// Descriptors first: a collection would close the sockets of leaked,
	// unreachable connections through their finalizers and hide the leak.
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	threads := -1
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return leakSnapshot{goroutines: runtime.NumGoroutine(), fds: len(fds), threads: threads, heap: ms.HeapAlloc}
}

// TestSamplerDoesNotLeak drives a real Sampler against the real kernel in a
// namespace holding a few hundred known sockets for 10000 cycles of full
// and rare dumps, reading a View after each as a scrape would, with
// periodic forced failures: a dump whose receive fails mid-way (the
// sampler must drop the connection), a failing dial right after it, and
// connections closed under the sampler. Goroutines, descriptors, threads
// and the live heap must end where they stood after warm-up.
func TestSamplerDoesNotLeak(t *testing.T) {
	ns := fixture.NewNetnsPrefix(t, "tsh6-")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var want collector.Counts
	for _, b := range []struct {
		fam   fixture.Family
		dfam  diag.Family
		pairs int
	}{{fixture.IPv4, diag.AFInet, 150}, {fixture.IPv6, diag.AFInet6, 50}} {
		s, err := ns.Established(ctx, b.fam, b.pairs)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		i := 0
		if b.dfam == diag.AFInet6 {
			i = 1
		}
		exp := s.Expected()
		want[i][diag.Established] = uint64(exp[fixture.Established])
		want[i][diag.Listen] = uint64(exp[fixture.Listen])
	}

	nsFile, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer nsFile.Close()
	nsFD := int(nsFile.Fd())

	// Kernel counters and sysctls are read inside the namespace through the
	// same handle --netns=all uses, so its thread switching is under test
	// too.
	h := openHandle(t, ns)

	f := &faults{}
	s := collector.NewSampler(collector.SamplerOptions{
		Interval: time.Second,
		Window:   time.Minute,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		InNetns:  h.Do,
		Dial: func() (*diag.Conn, error) {
			f.dials++
			if f.failDial {
				f.failDial = false
				f.dialFailures++
				return nil, fmt.Errorf("dial: %w", errForced)
			}
			tr, err := diag.DialTransport(&diag.DialOptions{NetNS: nsFD})
			if err != nil {
				return nil, err
			}
			return diag.NewConn(&faultTransport{Transport: tr, f: f}), nil
		},
	})
	defer s.Close()

	var (
		base        leakSnapshot
		sampleErrs  int
		unexpected  []error
		fullChecked int
		start       = time.Now()
		deadline    = start.Add(leakTimeLimit)
		cycles      int
	)
	for cycles = 0; cycles < leakCycles; cycles++ {
		if cycles == leakWarmup {
			base = takeLeakSnapshot(t)
			t.Logf("after %d warm-up cycles: %v", leakWarmup, base)
		}
		if cycles > leakWarmup && time.Now().After(deadline) {
			break
		}
		switch cycles % leakFaultEvery {
		case 10:
			f.failReceive = true // this dump fails after the request went out
		case 11:
			f.failDial = true // and the redial of the next one fails
		case 30:
			if err := s.Close(); err != nil {
				t.Fatalf("cycle %d: closing the sampler's connection: %v", cycles, err)
			}
			f.closesByTest++
		}
		kind := collector.Rare
		if cycles%4 == 0 {
			kind = collector.Full
		}
		smp, err := s.Sample(kind)
		if err != nil {
			sampleErrs++
			if !errors.Is(err, errForced) {
				unexpected = append(unexpected, fmt.Errorf("cycle %d: %w", cycles, err))
				if len(unexpected) > 10 {
					t.Fatalf("too many unexpected sample errors: %v", unexpected)
				}
			}
			continue
		}
		// The namespace holds only the fixture's sockets: every full
		// sample must see exactly those.
		if kind == collector.Full {
			for i := range want {
				for _, st := range []diag.State{diag.Established, diag.Listen} {
					if got := smp.Counts[i][st]; got != want[i][st] {
						t.Fatalf("cycle %d: %v %v = %d, want %d", cycles, collector.Families[i], st, got, want[i][st])
					}
				}
			}
			fullChecked++
		}
		if v := s.View(time.Now()); !v.Ready {
			t.Fatalf("cycle %d: View not ready after a successful sample", cycles)
		}
	}
	elapsed := time.Since(start)
	end := takeLeakSnapshot(t)
	t.Logf("after %d cycles in %v (%.0f µs each): %v", cycles, elapsed.Round(time.Millisecond), float64(elapsed.Microseconds())/float64(cycles), end)

	if len(unexpected) > 0 {
		t.Errorf("unexpected sample errors: %v", unexpected)
	}
	if cycles < leakMinCycles {
		t.Fatalf("only %d cycles ran within %v (host too busy?), want at least %d", cycles, leakTimeLimit, leakMinCycles)
	}
	// Every injected fault must have happened and been seen as an error,
	// or the test exercised less than it claims.
	rounds := (cycles + leakFaultEvery - 11) / leakFaultEvery
	if f.receiveFailures < rounds-1 || f.dialFailures < rounds-1 || sampleErrs != f.receiveFailures+f.dialFailures {
		t.Errorf("fault injection: %d receive and %d dial failures, %d sample errors, want about %d rounds with one error each",
			f.receiveFailures, f.dialFailures, sampleErrs, rounds)
	}
	// Each forced failure and each close makes the sampler dial again.
	if minDials := f.receiveFailures + f.closesByTest; f.dials < minDials {
		t.Errorf("%d dials, want at least %d: the sampler kept a failed connection", f.dials, minDials)
	}

	// Every connection the sampler dialed was closed by it, the live one
	// by Sampler.Close.
	if err := s.Close(); err != nil {
		t.Errorf("closing the sampler: %v", err)
	}
	t.Logf("dials %d (forced failures %d), connections closed %d, forced receive failures %d, closes by test %d, sample errors %d, full samples checked %d",
		f.dials, f.dialFailures, f.closes, f.receiveFailures, f.closesByTest, sampleErrs, fullChecked)
	if open := f.dials - f.dialFailures - f.closes; open != 0 {
		t.Errorf("%d of %d dialed connections never closed", open, f.dials-f.dialFailures)
	}

	if d := end.goroutines - base.goroutines; d > leakGoroutineSlack {
		t.Errorf("goroutines grew by %d (%d -> %d)", d, base.goroutines, end.goroutines)
	}
	if d := end.fds - base.fds; d > leakFDSlack {
		t.Errorf("open descriptors grew by %d (%d -> %d) over %d dials", d, base.fds, end.fds, f.dials)
	}
	if base.threads > 0 && end.threads-base.threads > leakThreadSlack {
		t.Errorf("threads grew by %d (%d -> %d)", end.threads-base.threads, base.threads, end.threads)
	}
	if end.heap > base.heap+leakHeapSlack {
		t.Errorf("live heap grew by %d KiB (%d -> %d KiB) over %d cycles", (end.heap-base.heap)>>10, base.heap>>10, end.heap>>10, cycles-leakWarmup)
	}
}
