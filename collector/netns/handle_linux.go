//go:build linux

package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/diag"
)

// Handle is an open network namespace. It holds one descriptor (none for
// the agent's own namespace) until Close. Its methods are safe for
// concurrent use.
type Handle struct {
	mu     sync.RWMutex
	ns     Namespace
	h      vnetns.NsHandle
	closed bool
}

// Open opens a handle on ns: through its bind mount if it has one (a path
// that cannot be recycled), else through /proc/PID/ns/net of one of its
// processes under procRoot. The descriptor is checked to still be ns, so a
// process ID reused since Discover cannot open another namespace. When every
// way in has gone, the error wraps ErrGone; lack of privilege wraps
// os.ErrPermission. The agent's own namespace needs no descriptor and no
// privilege.
func Open(ns Namespace, procRoot string) (*Handle, error) {
	ns.PIDs = append([]int(nil), ns.PIDs...)
	if ns.IsHost {
		return &Handle{ns: ns, h: vnetns.None()}, nil
	}
	var paths []string
	if ns.Path != "" {
		paths = append(paths, ns.Path)
	}
	for _, pid := range ns.PIDs {
		paths = append(paths, filepath.Join(procRoot, strconv.Itoa(pid), "ns", "net"))
	}
	var denied, last error
	for _, p := range paths {
		h, err := openNS(p)
		if err != nil {
			err = &fs.PathError{Op: "open", Path: p, Err: err}
			if errors.Is(err, fs.ErrPermission) {
				denied = err
			}
			last = err
			continue
		}
		k, err := fstatKey(int(h))
		if err == nil && k != ns.Key {
			err = fmt.Errorf("%s now refers to namespace %d", p, k.Inode)
		}
		if err != nil {
			h.Close()
			last = err
			continue
		}
		return &Handle{ns: ns, h: h}, nil
	}
	if denied != nil {
		return nil, fmt.Errorf("netns: opening namespace %d: %w", ns.Inode, denied)
	}
	if last == nil {
		last = errors.New("no process or bind mount left")
	}
	return nil, fmt.Errorf("%w: opening namespace %d: %w", ErrGone, ns.Inode, last)
}

// errNotNamespace reports a path that cannot be a namespace file, such as
// a FIFO planted in a --path.procfs tree.
var errNotNamespace = errors.New("not a namespace file")

// openNS opens the namespace file at path without blocking (a FIFO in its
// place would otherwise wait for a writer forever) and checks that the
// descriptor is a regular file, as nsfs files are; Open then checks that
// it is the namespace Discover found.
func openNS(path string) (vnetns.NsHandle, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return vnetns.None(), err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return vnetns.None(), err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return vnetns.None(), errNotNamespace
	}
	return vnetns.NsHandle(fd), nil
}

// Namespace returns the namespace the handle was opened on, with the
// process IDs and path of its latest discovery.
func (h *Handle) Namespace() Namespace {
	h.mu.RLock()
	defer h.mu.RUnlock()
	ns := h.ns
	ns.PIDs = append([]int(nil), ns.PIDs...)
	return ns
}

// update records a fresher discovery of the same namespace.
func (h *Handle) update(ns Namespace) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ns.Key == h.ns.Key {
		h.ns.PID, h.ns.PIDs, h.ns.Path = ns.PID, append([]int(nil), ns.PIDs...), ns.Path
	}
}

// Dial opens a sock_diag connection inside the namespace; its dumps read
// this namespace whatever thread later uses it. The connection holds a
// reference to the namespace until it is closed.
func (h *Handle) Dial() (*diag.Conn, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return nil, h.closedErr()
	}
	if h.ns.IsHost {
		return diag.Dial(nil)
	}
	c, err := diag.Dial(&diag.DialOptions{NetNS: int(h.h)})
	if err != nil {
		return nil, h.wrap("opening sock_diag in", err)
	}
	return c, nil
}

// Do runs fn on an OS thread switched into the namespace, for reads that
// follow the calling thread's namespace (such as /proc/thread-self/net/*;
// note that /proc/self/net and /proc/net follow the process's main thread
// instead). Sockets fn opens stay in the namespace. fn runs on a goroutine
// of its own, locked to its thread; goroutines it starts run in the agent's
// namespace. fn must not call Close, Do or Dial on this Handle. A panic in
// fn is raised again in the caller.
//
// In the agent's own namespace fn runs directly on the caller's goroutine.
// If the thread cannot be switched back, it stays locked and the runtime
// ends it with its goroutine, so no other goroutine runs in the wrong
// namespace.
func (h *Handle) Do(fn func() error) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return h.closedErr()
	}
	if h.ns.IsHost {
		return fn()
	}
	type result struct {
		err error
		pan any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("netns: opening the thread's own namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := vnetns.Set(h.h); err != nil {
			// setns failed: the thread is unchanged.
			runtime.UnlockOSThread()
			done <- result{err: h.wrap("entering", err)}
			return
		}
		res := result{}
		func() {
			defer func() {
				if p := recover(); p != nil {
					res.pan = p
				}
			}()
			res.err = fn()
		}()
		if err := vnetns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			if res.err == nil && res.pan == nil {
				res.err = fmt.Errorf("netns: leaving namespace %d: %w", h.ns.Inode, err)
			}
			done <- res
			return
		}
		runtime.UnlockOSThread()
		done <- res
	}()
	res := <-done
	if res.pan != nil {
		panic(res.pan)
	}
	return res.err
}

// Close releases the descriptor. Dial and Do fail with ErrGone afterwards.
// Closing twice is a no-op.
func (h *Handle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	if !h.h.IsOpen() {
		return nil
	}
	if err := h.h.Close(); err != nil {
		return fmt.Errorf("netns: closing namespace %d: %w", h.ns.Inode, err)
	}
	return nil
}

func (h *Handle) closedErr() error {
	return fmt.Errorf("%w: namespace %d: handle closed", ErrGone, h.ns.Inode)
}

// wrap adds context to err and marks errnos that mean the namespace or its
// descriptor is no longer there with ErrGone.
func (h *Handle) wrap(what string, err error) error {
	if isGoneErrno(err) {
		return fmt.Errorf("%w: %s namespace %d: %w", ErrGone, what, h.ns.Inode, err)
	}
	return fmt.Errorf("netns: %s namespace %d: %w", what, h.ns.Inode, err)
}

// isGoneErrno reports errnos that setns or a namespace lookup returns for
// a namespace that no longer exists or a descriptor that no longer refers
// to one.
func isGoneErrno(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case unix.ENOENT, unix.ESRCH, unix.EBADF, unix.EINVAL:
		return true
	}
	return false
}

// present reports whether the namespace can still be reached through its
// bind mount or one of its processes, as of its latest discovery: one stat
// per way in, cheap enough to run before every dump.
func (h *Handle) present(procRoot string) bool {
	ns := h.Namespace()
	if ns.IsHost {
		return true
	}
	if ns.Path != "" {
		if k, err := statKey(ns.Path); err == nil && k == ns.Key {
			return true
		}
	}
	for _, pid := range ns.PIDs {
		if k, err := statKey(filepath.Join(procRoot, strconv.Itoa(pid), "ns", "net")); err == nil && k == ns.Key {
			return true
		}
	}
	return false
}
