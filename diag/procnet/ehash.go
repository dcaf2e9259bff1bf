package procnet

import (
	"math"
	"path/filepath"
)

// Ehash describes the established hash table a network namespace's TCP
// sockets live in, from net.ipv4.tcp_ehash_entries (Linux 6.1 and later).
// A namespace created while net.ipv4.tcp_child_ehash_entries was non-zero
// gets a table of its own; any other shares the initial namespace's, and a
// sock_diag dump of a non-LISTEN state in it walks every sharing
// namespace's sockets.
type Ehash struct {
	// Entries is the number of buckets of the table.
	Entries int64
	// Private is true when the table is the namespace's own. The initial
	// namespace reads its table as its own, though every namespace without
	// a private table shares it.
	Private bool
}

// EhashPath is the sysctl's path below the procfs root.
const EhashPath = "sys/net/ipv4/tcp_ehash_entries"

// ReadEhash reads net.ipv4.tcp_ehash_entries of the calling thread's
// network namespace: the kernel writes the table's size, negated when the
// namespace shares the initial namespace's table. Before Linux 6.1 the file
// does not exist and the error wraps fs.ErrNotExist.
func (r *Reader) ReadEhash() (Ehash, error) {
	path := filepath.Join(r.root, filepath.FromSlash(EhashPath))
	data, err := r.readFile(path)
	if err != nil {
		return Ehash{}, err
	}
	return ParseEhash(data, path)
}

// ParseEhash parses the content of net.ipv4.tcp_ehash_entries. A zero
// value is a ParseError wrapping ErrValue: a table has at least one bucket.
func ParseEhash(data []byte, path string) (Ehash, error) {
	n, err := ParseSysctlInt(data)
	if err != nil {
		return Ehash{}, withFile(err, path)
	}
	switch {
	case n > 0:
		return Ehash{Entries: n, Private: true}, nil
	case n < 0 && n != math.MinInt64:
		return Ehash{Entries: -n}, nil
	}
	return Ehash{}, withFile(parseErr(0, ErrValue, "an established hash of 0 entries"), path)
}
