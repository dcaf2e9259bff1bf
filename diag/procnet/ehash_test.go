package procnet

import (
	"errors"
	"testing"
)

func TestParseEhash(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ehash
		err  error
	}{
		{"524288\n", Ehash{Entries: 524288, Private: true}, nil},
		{"-524288\n", Ehash{Entries: 524288}, nil},
		{"1024", Ehash{Entries: 1024, Private: true}, nil},
		{"0\n", Ehash{}, ErrValue},
		{"", Ehash{}, ErrSyntax},
		{"12 34", Ehash{}, ErrSyntax},
		{"x", Ehash{}, ErrValue},
	} {
		got, err := ParseEhash([]byte(tc.in), "/proc/sys/net/ipv4/tcp_ehash_entries")
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%q: error %v, want %v", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}
