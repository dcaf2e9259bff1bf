package procnet

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// DefaultProcRoot is where procfs is normally mounted.
const DefaultProcRoot = "/proc"

// maxFileSize bounds how much of one file Reader reads. The real files are a
// few KiB; anything larger is not procfs.
const maxFileSize = 1 << 20

// Reader reads the counters, sockstat and sysctls of the network namespace
// of the calling OS thread. Net files are read through
// ROOT/thread-self/net and sysctls through ROOT/sys, so a goroutine that
// has called runtime.LockOSThread and setns(CLONE_NEWNET) reads that
// namespace; any other goroutine reads the namespace all threads of the
// process share.
//
// A Reader keeps one buffer across reads so that a read every second
// allocates little. Hold makes it keep the net files open, so that a read
// of them is one pread each from any thread. It is not safe for concurrent use; use one Reader per
// goroutine.
type Reader struct {
	netstat, snmp, sockstat, sockstat6 string
	sysctls                            [numSysctls]string
	root                               string
	buf                                []byte
	// held are the net files Hold opened, holding whether it did;
	// notProcfs is set once Hold found they are not on procfs.
	held      [numHeld]*os.File
	holding   bool
	notProcfs bool
}

// NewReader returns a Reader for the procfs mounted at procRoot, or at
// DefaultProcRoot when procRoot is empty. procRoot may be a plain directory
// tree laid out like procfs (thread-self/net/netstat, sys/net/core/somaxconn,
// ...), which is how the tests fake it.
func NewReader(procRoot string) *Reader {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	netDir := filepath.Join(procRoot, "thread-self", "net")
	r := &Reader{
		netstat:   filepath.Join(netDir, "netstat"),
		snmp:      filepath.Join(netDir, "snmp"),
		sockstat:  filepath.Join(netDir, "sockstat"),
		sockstat6: filepath.Join(netDir, "sockstat6"),
		root:      procRoot,
		buf:       make([]byte, 0, 8192),
	}
	for k := Sysctl(0); k < numSysctls; k++ {
		r.sysctls[k] = filepath.Join(procRoot, "sys", filepath.FromSlash(k.Path()))
	}
	return r
}

// readFile reads the whole file at path into r.buf. Errors from the file
// system are *fs.PathError values naming path, so errors.Is against
// fs.ErrNotExist and fs.ErrPermission works. A file that is not regular (a
// FIFO, say) is refused with ErrNotRegular rather than read (see
// OpenRegular).
func (r *Reader) readFile(path string) ([]byte, error) {
	buf, err := readWhole(path, r.buf[:0])
	if buf != nil {
		r.buf = buf[:0]
	}
	if err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadNetstat reads the TcpExt counters from thread-self/net/netstat into
// c. It leaves the Tcp fields alone.
func (r *Reader) ReadNetstat(c *Counters) error {
	c.clear("TcpExt")
	data, err := r.readNet(heldNetstat, r.netstat)
	if err != nil {
		return err
	}
	if err := ParseCounters(data, c); err != nil {
		c.clear("TcpExt")
		return withFile(err, r.netstat)
	}
	return nil
}

// ReadSNMP reads the Tcp counters from thread-self/net/snmp into c. It
// leaves the TcpExt fields alone.
func (r *Reader) ReadSNMP(c *Counters) error {
	c.clear("Tcp")
	data, err := r.readNet(heldSNMP, r.snmp)
	if err != nil {
		return err
	}
	if err := ParseCounters(data, c); err != nil {
		c.clear("Tcp")
		return withFile(err, r.snmp)
	}
	return nil
}

// ReadCounters resets c and reads both netstat and snmp into it. When one
// file fails, the fields of the other are still filled and marked present;
// the error (an errors.Join of the failures) names each failed file.
func (r *Reader) ReadCounters(c *Counters) error {
	*c = Counters{}
	return errors.Join(r.ReadNetstat(c), r.ReadSNMP(c))
}

// ReadSockstat resets s and reads thread-self/net/sockstat and sockstat6
// into it. A missing sockstat6 (IPv6 disabled) is not an error: TCP6InUse
// is then simply absent from s.Present. Any other failure is returned,
// naming the file, and leaves only that file's fields absent.
func (r *Reader) ReadSockstat(s *Sockstat) error {
	*s = Sockstat{}
	var errs [2]error
	if data, err := r.readNet(heldSockstat, r.sockstat); err != nil {
		errs[0] = err
	} else if err := ParseSockstat(data, s); err != nil {
		errs[0] = withFile(err, r.sockstat)
		s.Present = s.Present & (1 << SockstatTCP6InUse)
	}
	var s6 Sockstat
	if data, err := r.readNet(heldSockstat6, r.sockstat6); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			errs[1] = err
		}
	} else if err := ParseSockstat(data, &s6); err != nil {
		errs[1] = withFile(err, r.sockstat6)
	} else if s6.Present.Has(SockstatTCP6InUse) {
		s.TCP6InUse = s6.TCP6InUse
		s.Present = s.Present.Add(SockstatTCP6InUse)
	}
	return errors.Join(errs[0], errs[1])
}

// ReadSysctl reads one sysctl into s, marking it present on success and
// absent on failure.
func (r *Reader) ReadSysctl(k Sysctl, s *Sysctls) error {
	if k >= numSysctls {
		return fmt.Errorf("procnet: unknown sysctl %d", k)
	}
	s.Present &^= 1 << k
	switch k {
	case SysctlIPLocalPortRange:
		s.PortRange = PortRange{}
	case SysctlIPLocalReservedPorts:
		s.ReservedPorts = s.ReservedPorts[:0]
	default:
		*s.intPtr(k) = 0
	}
	path := r.sysctls[k]
	data, err := r.readFile(path)
	if err != nil {
		return err
	}
	switch k {
	case SysctlIPLocalPortRange:
		pr, err := ParsePortRange(data)
		if err != nil {
			return withFile(err, path)
		}
		s.PortRange = pr
	case SysctlIPLocalReservedPorts:
		rs, err := ParseReservedPorts(data, s.ReservedPorts)
		if err != nil {
			return withFile(err, path)
		}
		s.ReservedPorts = rs
	default:
		n, err := ParseSysctlInt(data)
		if err != nil {
			return withFile(err, path)
		}
		*s.intPtr(k) = n
	}
	s.Present = s.Present.Add(k)
	return nil
}

// ReadSysctls reads every sysctl of this package into s. Each one that
// fails is left absent from s.Present and its error, naming the file, is
// part of the returned errors.Join; the others are filled in.
func (r *Reader) ReadSysctls(s *Sysctls) error {
	var errs []error
	for k := Sysctl(0); k < numSysctls; k++ {
		if err := r.ReadSysctl(k, s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
