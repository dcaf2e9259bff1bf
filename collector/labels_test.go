package collector

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestSafeLabel(t *testing.T) {
	long := strings.Repeat("a", 10<<10)
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"nginx", "nginx"},
		{"kube-system", "kube-system"},
		{"ééé", "ééé"},
		{"\uFFFD", "\uFFFD"},
		// The kernel's 15-byte cut of "éééééééésrv".
		{strings.Repeat("é", 7) + "\xc3", strings.Repeat("é", 7) + "\uFFFD"},
		// A run of invalid bytes is one replacement, as strings.ToValidUTF8.
		{"a\xff\xfe\xfdb", "a\uFFFDb"},
		{"a\nb\tc\x00d\x1b[31m\x7f", "a\uFFFDb\uFFFDc\uFFFDd\uFFFD[31m\uFFFD"},
		{"\u0085x", "\uFFFDx"}, // C1 control (NEL)
		{long, long[:MaxLabelLen]},
		// A cut never splits a character.
		{strings.Repeat("é", MaxLabelLen), strings.Repeat("é", MaxLabelLen/2)},
		{"a" + strings.Repeat("é", MaxLabelLen), "a" + strings.Repeat("é", (MaxLabelLen-1)/2)},
	} {
		if got := SafeLabel(c.in); got != c.want {
			t.Errorf("SafeLabel(%q) = %q, want %q", trim(c.in), trim(got), trim(c.want))
		}
	}
}

func trim(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// TestSafeLabelAllocs checks that a clean value costs no allocation: every
// label value of every scrape passes through SafeLabel.
func TestSafeLabelAllocs(t *testing.T) {
	for _, s := range []string{"", "nginx", "kube-system", "ééééééésrv", strings.Repeat("x", MaxLabelLen)} {
		if n := testing.AllocsPerRun(100, func() { _ = SafeLabel(s) }); n != 0 {
			t.Errorf("SafeLabel(%q) allocates %v times", trim(s), n)
		}
	}
}

// checkSafe fails unless out is what SafeLabel promises for in.
func checkSafe(t *testing.T, in, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("SafeLabel(%q) = %q: not valid UTF-8", trim(in), trim(out))
	}
	if len(out) > MaxLabelLen {
		t.Fatalf("SafeLabel(%q) is %d bytes, more than %d", trim(in), len(out), MaxLabelLen)
	}
	for _, r := range out {
		if unicode.IsControl(r) {
			t.Fatalf("SafeLabel(%q) = %q holds control character %U", trim(in), trim(out), r)
		}
	}
	if (in == "") != (out == "") {
		t.Fatalf("SafeLabel(%q) = %q: emptiness changed", trim(in), trim(out))
	}
	if again := SafeLabel(out); again != out {
		t.Fatalf("SafeLabel is not idempotent: %q then %q", trim(out), trim(again))
	}
	if labelClean(in) && out != in {
		t.Fatalf("SafeLabel changed the clean value %q to %q", trim(in), trim(out))
	}
}

func FuzzSafeLabel(f *testing.F) {
	for _, s := range []string{"", "nginx", "ééééééé\xc3", "a\nb", "\x00", "\u0085", "\xff\xfe", strings.Repeat("é", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkSafe(t, s, SafeLabel(s)) })
}

// BenchmarkSafeLabel measures a clean value (every scrape's case) and a
// dirty one (a process name cut inside a character).
func BenchmarkSafeLabel(b *testing.B) {
	for _, c := range []struct{ name, s string }{
		{"clean-ascii", "kube-proxy"},
		{"clean-utf8", "éééééééé"},
		{"cut-comm", strings.Repeat("é", 7) + "\xc3"},
		{"10KB", strings.Repeat("k", 10<<10)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = SafeLabel(c.s)
			}
		})
	}
}
