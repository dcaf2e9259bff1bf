package collector

import (
	"errors"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// Kernel files as tcpstate_kernel_read_errors_total names them: the procfs
// net files by base name, sysctls by dotted name, and "netns" when the
// sampler could not enter the namespace to read any of them.
const (
	fileNetstat   = "netstat"
	fileSNMP      = "snmp"
	fileSockstat  = "sockstat"
	fileSockstat6 = "sockstat6"
	fileNetns     = "netns"
)

// sysctls lists every sysctl procnet reads.
var sysctls = func() []procnet.Sysctl {
	var ks []procnet.Sysctl
	for k := procnet.Sysctl(0); k.Name() != "unknown"; k++ {
		ks = append(ks, k)
	}
	return ks
}()

// ReadErrorFiles lists the file label values of tcpstate_kernel_read_errors_total.
func ReadErrorFiles() []string {
	fs := []string{fileNetstat, fileSNMP, fileSockstat, fileSockstat6}
	for _, k := range sysctls {
		fs = append(fs, k.Name())
	}
	return append(fs, fileNetns)
}

// readError is a failed read of one kernel file.
type readError struct {
	file string
	err  error
}

// readProcfs reads the counters, sockstat and (when withSysctls) sysctls
// of the namespace through r, on the thread inNetns provides. A file that
// fails leaves only its own values absent. It also returns the CPU the
// reads used when inNetns ran them on another thread.
//
// also, when set, runs inside the namespace after the reads (the same
// entry), for reads that are not every sample's.
//
// A read without sysctls and without also (the cheap path's, most
// seconds) makes r hold the net files open the first time, from inside the
// namespace; from then on such reads are one pread per file on the calling
// thread, without entering the namespace (see procnet.Reader.Hold). Where
// r cannot hold them (a --path.procfs tree that is not procfs) every read
// enters the namespace and opens them.
func readProcfs(r *procnet.Reader, inNetns func(func() error) error, withSysctls bool, also func()) (ProcfsValues, []readError, time.Duration) {
	var k ProcfsValues
	var errs []readError
	var other time.Duration
	fail := func(file string, err error) { errs = append(errs, readError{file, err}) }
	direct := !withSysctls && also == nil
	if direct && r.Held() {
		readNetFiles(r, &k, fail)
		// A held file that fails to read is not read again through the
		// same descriptor: the next read opens the files afresh from
		// inside the namespace. A file that was absent when they were
		// held (sockstat6 without IPv6) is not a failure of that kind.
		for _, e := range errs {
			if !errors.Is(e.err, fs.ErrNotExist) {
				_ = r.Release()
				break
			}
		}
		return k, errs, 0
	}
	caller := threadID()
	err := inNetns(func() error {
		if tid := threadID(); tid != caller {
			cpu0 := threadCPU()
			defer func() { other = threadCPU() - cpu0 }()
		}
		if direct {
			// Failure leaves r opening the files at every read, as
			// before: slower, nothing lost.
			_ = r.Hold()
		}
		readNetFiles(r, &k, fail)
		for _, s := range sysctls {
			if !withSysctls {
				break
			}
			err := r.ReadSysctl(s, &k.Sysctls)
			// tcp_max_orphans exists only in the initial namespace: its
			// absence elsewhere is normal, not a failure.
			if err != nil && !(s == procnet.SysctlTCPMaxOrphans && errors.Is(err, fs.ErrNotExist)) {
				fail(s.Name(), err)
			}
		}
		if also != nil {
			also()
		}
		return nil
	})
	if err != nil {
		return ProcfsValues{}, []readError{{fileNetns, err}}, other
	}
	return k, errs, other
}

// readNetFiles reads netstat, snmp and sockstat (and sockstat6) into k and
// reports each file that fails.
func readNetFiles(r *procnet.Reader, k *ProcfsValues, fail func(file string, err error)) {
	if err := r.ReadNetstat(&k.Counters); err != nil {
		fail(fileNetstat, err)
	}
	if err := r.ReadSNMP(&k.Counters); err != nil {
		fail(fileSNMP, err)
	}
	if err := r.ReadSockstat(&k.Sockstat); err != nil {
		for _, e := range leafErrors(err) {
			file := fileSockstat
			if errFile(e) == fileSockstat6 {
				file = fileSockstat6
			}
			fail(file, e)
		}
	}
}

// isSysctlFile reports whether a kernel file name is a sysctl's.
func isSysctlFile(f string) bool {
	for _, s := range sysctls {
		if s.Name() == f {
			return true
		}
	}
	return false
}

// leafErrors flattens errors.Join trees.
func leafErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// errFile returns the base name of the file an error is about, or "".
func errFile(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return filepath.Base(pe.Path)
	}
	var parse *procnet.ParseError
	if errors.As(err, &parse) && parse.File != "" {
		return filepath.Base(parse.File)
	}
	return ""
}
