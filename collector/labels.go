package collector

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLabelLen bounds the bytes of a label value that SafeLabel returns.
// Process names are at most 15 bytes and Kubernetes names at most 253;
// anything longer did not come from where it claims to.
const MaxLabelLen = 256

// SafeLabel returns s as a label value Prometheus accepts and a person can
// read: every byte sequence that is not valid UTF-8 and every control
// character (C0, DEL, C1: newlines, escapes, NUL) becomes U+FFFD, and the
// result is cut at a character boundary to at most MaxLabelLen bytes.
// Empty stays empty (Prometheus treats an empty value as an absent label,
// which is what the callers mean by "unknown").
//
// Every label value from outside the agent (process names, pod and
// namespace names, anything read from /proc, the Kubernetes API, the kernel
// or BPF maps) passes through it. It returns s itself, without allocating,
// when s is already clean, which is the common case on every scrape.
func SafeLabel(s string) string {
	if labelClean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), MaxLabelLen))
	invalid := false // the previous byte was invalid UTF-8
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if r == utf8.RuneError && n == 1 {
			// A run of invalid bytes becomes one U+FFFD, as
			// strings.ToValidUTF8 does.
			if invalid {
				continue
			}
			invalid = true
		} else {
			invalid = false
			if unicode.IsControl(r) {
				r = utf8.RuneError
			}
		}
		if b.Len()+utf8.RuneLen(r) > MaxLabelLen {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// labelClean reports whether SafeLabel would return s unchanged.
func labelClean(s string) bool {
	if len(s) > MaxLabelLen {
		return false
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || unicode.IsControl(r) {
			return false
		}
		i += n
	}
	return true
}
