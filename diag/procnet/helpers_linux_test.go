//go:build linux

package procnet

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// onThread runs fn on a goroutine locked to its own OS thread and waits for
// it. The goroutine exits without unlocking, so the runtime discards the
// thread together with whatever per-thread state fn changed (namespace,
// fsuid).
func onThread(t *testing.T, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("panic: %v", p)
			}
		}()
		done <- fn()
	}()
	return <-done
}

// asUser runs fn on a dedicated thread whose file-system uid is uid. The
// kernel drops the file capabilities (CAP_DAC_OVERRIDE and friends) of
// that thread only, so even a root test sees permission errors there.
func asUser(t *testing.T, uid int, fn func() error) error {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("changing the file-system uid needs root")
	}
	return onThread(t, func() error {
		if err := unix.Setfsuid(uid); err != nil {
			return fmt.Errorf("setfsuid: %w", err)
		}
		if got, _ := unix.SetfsuidRetUid(-1); got != uid {
			return fmt.Errorf("fsuid is %d, want %d", got, uid)
		}
		return fn()
	})
}

// newNetns creates a network namespace with the project's fixture
// (tspn-<random>, lo up, deleted when the test ends; a test that cannot
// create namespaces skips saying why). It returns the name and its
// /run/netns path.
func newNetns(t *testing.T) (name, path string) {
	t.Helper()
	ns := fixture.NewNetnsPrefix(t, "tspn-")
	return ns.Name(), ns.Path()
}

// inNetns runs fn on a dedicated thread that has joined the namespace at
// nsPath.
func inNetns(t *testing.T, nsPath string, fn func() error) error {
	t.Helper()
	return onThread(t, func() error {
		fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", nsPath, err)
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("setns %s: %w", nsPath, err)
		}
		return fn()
	})
}
