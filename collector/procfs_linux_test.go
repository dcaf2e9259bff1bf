//go:build linux

package collector

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSamplerFIFOInProcfs is issue 10's FIFO reproduction: FIFOs where
// netstat, a sysctl and a process's comm should be. Sampling must go on
// (the old reader waited forever for a writer), each refused file counted
// in tcpstate_kernel_read_errors_total and logged once, and the other
// files still read.
func TestSamplerFIFOInProcfs(t *testing.T) {
	files := defaultProcFiles()
	delete(files, "thread-self/net/netstat")
	delete(files, "sys/net/core/somaxconn")
	files["77/fd/.keep"] = ""
	proc := writeProc(t, files)
	for _, f := range []string{"thread-self/net/netstat", "sys/net/core/somaxconn", "77/comm"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(proc, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mkfifo(filepath.Join(proc, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Process 77 owns the CLOSE_WAIT socket of inode 555.
	if err := os.Symlink("socket:[555]", filepath.Join(proc, "77", "fd", "3")); err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	socks := []diag.Socket{closeWaitSock(lo, 8080, lo, 50000, 1, 555)}
	var logs syncBuffer
	cfg := detect.DefaultConfig()
	cfg.CloseWaitMinAge = 30 * time.Millisecond
	s := NewSampler(SamplerOptions{Dial: fakeDial(socks), ProcRoot: proc, Detect: cfg,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	done := make(chan error, 1)
	go func() {
		for range 3 {
			if _, err := s.Sample(Full); err != nil {
				done <- err
				return
			}
			time.Sleep(2 * cfg.CloseWaitMinAge)
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sampling blocked on a FIFO in the procfs tree for 10 s")
	}
	v := s.View(time.Now())
	if v.ReadErrors[fileNetstat] != 3 || v.ReadErrors["net.core.somaxconn"] != 3 {
		t.Errorf("kernel read errors %v: want 3 for netstat and net.core.somaxconn", v.ReadErrors)
	}
	if n := strings.Count(logs.String(), "not a regular file"); n != 2 {
		t.Errorf("%d log lines name a refused file, want one each for netstat and somaxconn:\n%s", n, logs.String())
	}
	k := v.Latest.Procfs
	if v, ok := k.Sysctls.Int(procnet.SysctlTCPMaxTWBuckets); !ok || v != 5000 {
		t.Errorf("tcp_max_tw_buckets beside the FIFOs: %d %v", v, ok)
	}
	// The owner's comm is a FIFO: the socket stays in a group without a
	// command rather than stopping the lookup.
	if len(v.Latest.CloseWait) != 1 || v.Latest.CloseWait[0].Command != "" {
		t.Errorf("CLOSE_WAIT groups %+v: want one without a command", v.Latest.CloseWait)
	}
}
