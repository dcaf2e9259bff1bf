package procnet

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Net files a Reader can hold open, in the order of Reader.held.
const (
	heldNetstat = iota
	heldSNMP
	heldSockstat
	heldSockstat6
	numHeld
)

// ErrNotProcfs is returned by Reader.Hold when the net files are not on a
// procfs mount (a --path.procfs tree laid out like one): such a tree is
// read by opening its files every time, so that a file replaced in it is
// seen.
var ErrNotProcfs = errors.New("not a procfs mount")

// Hold opens the namespace's net files (netstat, snmp, sockstat and, when
// IPv6 is on, sockstat6) and keeps them open: later reads of them are a
// pread at offset 0 of the held descriptor, which makes procfs generate the
// file afresh for the namespace it was opened in, from whatever thread
// reads it. Call Hold on a thread inside the namespace; afterwards the
// reads of the net files need not be. Sysctls are still opened at every
// read, on the calling thread. Each held file keeps a reference to the
// namespace until Release.
//
// Hold fails, holding nothing, when a file cannot be opened or is not on
// procfs (ErrNotProcfs, remembered: later calls fail at once); the Reader
// then keeps opening the files at every read.
func (r *Reader) Hold() error {
	if r.Held() {
		return nil
	}
	if r.notProcfs {
		return fmt.Errorf("procnet: holding %s: %w", r.netstat, ErrNotProcfs)
	}
	var files [numHeld]*os.File
	release := func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}
	for i, path := range []string{r.netstat, r.snmp, r.sockstat, r.sockstat6} {
		f, err := OpenRegular(path)
		if err != nil {
			if i == heldSockstat6 && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			release()
			return fmt.Errorf("procnet: holding %s: %w", path, err)
		}
		files[i] = f
		proc, err := onProcfs(f)
		if err != nil {
			release()
			return fmt.Errorf("procnet: holding %s: %w", path, err)
		}
		if !proc {
			release()
			r.notProcfs = true
			return fmt.Errorf("procnet: holding %s: %w", path, ErrNotProcfs)
		}
	}
	r.held, r.holding = files, true
	return nil
}

// Held reports whether the Reader holds the net files open (see Hold).
func (r *Reader) Held() bool { return r.holding }

// Release closes the files Hold opened; the Reader opens them at every
// read again. Releasing a Reader that holds nothing does nothing.
func (r *Reader) Release() error {
	var errs []error
	for i, f := range r.held {
		if f != nil {
			errs = append(errs, f.Close())
			r.held[i] = nil
		}
	}
	r.holding = false
	return errors.Join(errs...)
}

// readNet reads net file i (a held* index) at path: through the held
// descriptor when the Reader holds one, else by opening path.
func (r *Reader) readNet(i int, path string) ([]byte, error) {
	if !r.holding {
		return r.readFile(path)
	}
	f := r.held[i]
	if f == nil {
		// Absent when Hold ran (sockstat6 without IPv6).
		return nil, fmt.Errorf("procnet: %w", &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist})
	}
	buf := r.buf[:cap(r.buf)]
	for {
		// One pread at offset 0 regenerates the file; ReadAt reads on
		// until the buffer is full or the file ends.
		n, err := f.ReadAt(buf, 0)
		switch {
		case err == io.EOF || (err == nil && n < len(buf)):
			r.buf = buf[:0]
			return buf[:n], nil
		case err != nil:
			return nil, fmt.Errorf("procnet: %w", err)
		case len(buf) >= maxFileSize:
			return nil, fmt.Errorf("procnet: %s: larger than %d bytes", path, maxFileSize)
		}
		buf = make([]byte, 2*len(buf))
	}
}

// room returns buf with space for at least one more byte, refusing to grow
// past maxFileSize: a file that large is not procfs.
func room(buf []byte, path string) ([]byte, error) {
	if len(buf) < cap(buf) {
		return buf, nil
	}
	if cap(buf) >= maxFileSize {
		return buf, fmt.Errorf("procnet: %s: larger than %d bytes", path, maxFileSize)
	}
	return append(buf, 0)[:len(buf)], nil
}
