package procnet

import "bytes"

// isSep reports whether c separates tokens. The kernel writes single spaces
// in the /proc/net tables and a tab in ip_local_port_range; carriage
// returns are tolerated for hand-written files.
func isSep(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

// cutLine returns the text before the first newline and the text after it.
func cutLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// nextToken skips separators and returns the following token and what
// remains after it. The token is empty when b holds only separators.
func nextToken(b []byte) (tok, rest []byte) {
	i := 0
	for i < len(b) && isSep(b[i]) {
		i++
	}
	j := i
	for j < len(b) && !isSep(b[j]) {
		j++
	}
	return b[i:j], b[j:]
}

// isBlank reports whether b holds only separators.
func isBlank(b []byte) bool {
	for _, c := range b {
		if !isSep(c) {
			return false
		}
	}
	return true
}

// trimSpace removes separators and newlines from both ends of b.
func trimSpace(b []byte) []byte {
	sp := func(c byte) bool { return isSep(c) || c == '\n' }
	for len(b) > 0 && sp(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && sp(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// cutSection splits "Name: rest" into "Name" and " rest". ok is false when
// there is no colon or the name is empty or contains a separator.
func cutSection(line []byte) (name, rest []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return nil, nil, false
	}
	name = line[:i]
	for _, c := range name {
		if isSep(c) {
			return nil, nil, false
		}
	}
	return name, line[i+1:], true
}

// parseUint parses a non-empty string of ASCII digits into a uint64. It
// rejects signs, other characters, and values that overflow.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// parseInt parses an optionally negative decimal integer into an int64.
func parseInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg = true
		b = b[1:]
	}
	u, ok := parseUint(b)
	if !ok {
		return 0, false
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// isInt reports whether b is an optionally negative run of digits, without
// a range check. Columns nobody reads only need to look like numbers.
func isInt(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
