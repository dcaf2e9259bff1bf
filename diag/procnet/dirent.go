package procnet

import (
	"bytes"
	"encoding/binary"
)

// direntHeaderLen is the size of struct linux_dirent64 before d_name:
// d_ino (8), d_off (8), d_reclen (2), d_type (1).
const direntHeaderLen = 19

// nextDirent decodes the first struct linux_dirent64 record of buf, as
// getdents64 fills it, and returns the entry name and the records after it.
// The name excludes its NUL terminator and aliases buf. A record whose
// length field is shorter than its header or runs past buf is an error.
func nextDirent(buf []byte) (name, rest []byte, err error) {
	if len(buf) < direntHeaderLen {
		return nil, nil, parseErr(0, ErrTruncated, "dirent header needs %d bytes, have %d", direntHeaderLen, len(buf))
	}
	reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
	if reclen < direntHeaderLen {
		return nil, nil, parseErr(0, ErrSyntax, "dirent length %d below header size", reclen)
	}
	if reclen > len(buf) {
		return nil, nil, parseErr(0, ErrTruncated, "dirent length %d, have %d bytes", reclen, len(buf))
	}
	name = buf[direntHeaderLen:reclen]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return name, buf[reclen:], nil
}

// parseSocketLink returns the inode of a socket file descriptor's link
// target, "socket:[12345]". ok is false for any other target.
func parseSocketLink(b []byte) (ino uint64, ok bool) {
	const prefix = "socket:["
	if len(b) < len(prefix)+2 || string(b[:len(prefix)]) != prefix || b[len(b)-1] != ']' {
		return 0, false
	}
	return parseUint(b[len(prefix) : len(b)-1])
}

// parsePID returns the process ID a /proc entry name stands for. ok is
// false for names that are not positive decimal numbers, such as "self" or
// "net", and for numbers with a leading zero.
func parsePID(b []byte) (pid int, ok bool) {
	if len(b) == 0 || len(b) > 10 || b[0] == '0' {
		return 0, false
	}
	u, ok := parseUint(b)
	if !ok || u > 1<<31-1 {
		return 0, false
	}
	return int(u), true
}
