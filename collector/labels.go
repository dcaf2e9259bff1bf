package collector

import (
	"strings"
	"unicode"
)

// maxLabelLen bounds a label value taken from outside the agent, in bytes.
const maxLabelLen = 256

// SafeLabel returns s fit for a label value: valid UTF-8 (invalid bytes
// replaced), without control characters, and at most maxLabelLen bytes, cut
// at a character boundary. Every label value that comes from outside the
// agent (process names, anything from /proc or the kernel) goes through it.
func SafeLabel(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	if len(s) <= maxLabelLen {
		return s
	}
	cut := maxLabelLen
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
