//go:build !linux

package procnet

import (
	"fmt"
	"io"
	"os"
)

// onProcfs reports whether f is on a procfs mount: never, off Linux.
func onProcfs(*os.File) (bool, error) { return false, nil }

// readWhole reads the whole file at path into buf (grown as needed, up to
// maxFileSize) through OpenRegular. The buffer is returned even on error,
// for reuse.
func readWhole(path string, buf []byte) ([]byte, error) {
	f, err := OpenRegular(path)
	if err != nil {
		return buf, fmt.Errorf("procnet: %w", err)
	}
	defer f.Close()
	buf = buf[:0]
	for {
		var err error
		if buf, err = room(buf, path); err != nil {
			return buf, err
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf[:0], fmt.Errorf("procnet: %w", err)
		}
	}
}
