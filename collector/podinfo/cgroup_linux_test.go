//go:build linux

package podinfo

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// TestPodUIDRefusesFIFO checks that a FIFO where a process's cgroup file
// should be is refused at once rather than waited on.
func TestPodUIDRefusesFIFO(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "42"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, "42", "cgroup"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := PodUID(root, 42)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, procnet.ErrNotRegular) {
			t.Errorf("PodUID over a FIFO: %v, want ErrNotRegular", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("PodUID blocked on a FIFO for 5 s")
	}
}
