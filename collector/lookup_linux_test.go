//go:build linux

package collector

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// TestResumingLookupReachesEveryProcess checks that bounded owner lookups
// carry on where the previous one stopped, and then go straight to the
// owner found before.
func TestResumingLookupReachesEveryProcess(t *testing.T) {
	root := t.TempDir()
	for pid := 10; pid < 30; pid++ {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(filepath.Join(dir, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "comm"), []byte("p"+strconv.Itoa(pid)+"\n"), 0o644)
		target := "pipe:[1]"
		if pid == 23 {
			target = "socket:[777]"
		}
		if err := os.Symlink(target, filepath.Join(dir, "fd", "3")); err != nil {
			t.Fatal(err)
		}
	}
	lookup := resumingLookup(procnet.NewInodeLookup(root), 3)
	calls := 0
	for ; calls < 20; calls++ {
		owners, complete, err := lookup([]uint64{777}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if ps := owners[777]; len(ps) > 0 {
			if ps[0].PID != 23 || ps[0].Comm != "p23" || !complete {
				t.Fatalf("owner %+v complete %v, want pid 23 p23", ps, complete)
			}
			break
		}
	}
	// 20 processes at 3 per lookup: at most 7 lookups reach pid 23.
	if calls >= 7 {
		t.Fatalf("owner found after %d lookups of 3 processes among 20", calls+1)
	}
	// The owner is now a hint: the next lookup finds it at once.
	owners, complete, err := lookup([]uint64{777}, time.Minute)
	if err != nil || !complete || len(owners[777]) != 1 {
		t.Fatalf("hinted lookup: %v %v %v", owners, complete, err)
	}
}
