//go:build linux

package procnet

import (
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
