package collector

import (
	"strings"
	"unicode"
)

// maxLabelLen bounds a label value from outside the agent, in bytes.
const maxLabelLen = 256

// SafeLabel makes a label value from outside the agent (process names,
// Kubernetes names, kernel or BPF data) safe to export: valid UTF-8, no
// control characters, at most 256 bytes.
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
