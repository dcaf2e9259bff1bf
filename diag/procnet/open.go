package procnet

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegular reports a file that should be a procfs or sysctl file but
// is a FIFO, device, socket or directory: reading it could block forever or
// return anything, so it is refused. Test for it with errors.Is.
var ErrNotRegular = errors.New("not a regular file")

// OpenRegular opens path for reading without blocking and returns it only
// if it is a regular file, which every procfs and sysctl file is. A FIFO
// planted where a procfs file should be (a --path.procfs tree is only a
// directory) is refused with an *fs.PathError wrapping ErrNotRegular rather
// than waited on: the open does not wait for a writer (O_NONBLOCK) and the
// type is checked on the open descriptor (fstat), so no rename between a
// check and the open can slip one in.
func OpenRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: path, Err: ErrNotRegular}
	}
	return f, nil
}
