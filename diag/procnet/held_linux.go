//go:build linux

package procnet

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// onProcfs reports whether f is on a procfs mount.
func onProcfs(f *os.File) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return false, err
	}
	return st.Type == unix.PROC_SUPER_MAGIC, nil
}

// readWhole reads the whole file at path into buf (grown as needed, up to
// maxFileSize) and returns it. It refuses a file that is not regular, as
// OpenRegular does, but with plain system calls: os.OpenFile also tries to
// register every file with the runtime's poller, which for the dozen
// procfs and sysctl files of a sample is a good part of their cost. The
// buffer is returned even on error, for reuse.
func readWhole(path string, buf []byte) ([]byte, error) {
	fd, err := openRetry(path)
	if err != nil {
		return buf, fmt.Errorf("procnet: %w", &fs.PathError{Op: "open", Path: path, Err: err})
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return buf, fmt.Errorf("procnet: %w", &fs.PathError{Op: "stat", Path: path, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return buf, fmt.Errorf("procnet: %w", &fs.PathError{Op: "open", Path: path, Err: ErrNotRegular})
	}
	buf = buf[:0]
	for {
		var err error
		if buf, err = room(buf, path); err != nil {
			return buf, err
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return buf[:0], fmt.Errorf("procnet: %w", &fs.PathError{Op: "read", Path: path, Err: err})
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

func openRetry(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}
