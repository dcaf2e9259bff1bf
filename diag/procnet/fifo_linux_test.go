//go:build linux

package procnet

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mkfifo makes a FIFO at path (and its parent directories); nothing ever
// writes to it, so a plain open for reading would wait forever.
func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

// within runs fn and fails the test if it has not returned after limit.
func within(t *testing.T, limit time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("%s blocked for %v", what, limit)
	}
}

// TestReaderRefusesFIFO checks that a FIFO where a procfs or sysctl file
// should be is refused with ErrNotRegular at once, naming the file, and
// that the other files are still read.
func TestReaderRefusesFIFO(t *testing.T) {
	root := t.TempDir()
	mkfifo(t, filepath.Join(root, "thread-self", "net", "netstat"))
	mkfifo(t, filepath.Join(root, "sys", "net", "core", "somaxconn"))
	if err := os.WriteFile(filepath.Join(root, "thread-self", "net", "snmp"), []byte("Tcp: OutRsts\nTcp: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := NewReader(root)
	var c Counters
	var s Sysctls
	var netstatErr, snmpErr, sysctlErr error
	within(t, 5*time.Second, "reading a FIFO", func() {
		netstatErr = r.ReadNetstat(&c)
		snmpErr = r.ReadSNMP(&c)
		sysctlErr = r.ReadSysctl(SysctlSomaxconn, &s)
	})
	for _, err := range []error{netstatErr, sysctlErr} {
		var pe *os.PathError
		if !errors.Is(err, ErrNotRegular) || !errors.As(err, &pe) {
			t.Errorf("FIFO read: %v, want an *fs.PathError wrapping ErrNotRegular", err)
		}
	}
	if v, ok := c.Get(FieldOutRsts); snmpErr != nil || !ok || v != 7 {
		t.Errorf("snmp beside the FIFO: %d %v %v", v, ok, snmpErr)
	}
	if _, err := OpenRegular(root); !errors.Is(err, ErrNotRegular) {
		t.Errorf("OpenRegular of a directory: %v, want ErrNotRegular", err)
	}
}

// TestLookupRefusesFIFOComm checks that an owner lookup whose process has
// a FIFO for comm skips it (counted as failed) instead of waiting on it.
func TestLookupRefusesFIFOComm(t *testing.T) {
	root := t.TempDir()
	for _, pid := range []string{"10", "20"} {
		if err := os.MkdirAll(filepath.Join(root, pid, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("socket:[4242]", filepath.Join(root, pid, "fd", "3")); err != nil {
			t.Fatal(err)
		}
	}
	mkfifo(t, filepath.Join(root, "10", "comm"))
	if err := os.WriteFile(filepath.Join(root, "20", "comm"), []byte("good\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var owners map[uint64][]Process
	var st LookupStats
	var err error
	within(t, 5*time.Second, "a lookup over a FIFO comm", func() {
		owners, st, err = NewInodeLookup(root).Lookup([]uint64{4242}, LookupOptions{AllOwners: true})
	})
	if err != nil {
		t.Fatal(err)
	}
	if ps := owners[4242]; len(ps) != 1 || ps[0].PID != 20 || ps[0].Comm != "good" || st.Failed != 1 {
		t.Errorf("owners %v, stats %+v: want only pid 20 \"good\" and one failed process", ps, st)
	}
}
