package diag_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/diagtest"
)

// recordedDumps returns the real dumps in testdata (see TestRecordDumps).
func recordedDumps(f *testing.F) [][]byte {
	f.Helper()
	files, _ := filepath.Glob(filepath.Join("testdata", "dump-*.bin"))
	if len(files) == 0 {
		f.Fatal("no recorded dumps in testdata; run go test -run TestRecordDumps ./diag -args -update-testdata")
	}
	var out [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// recordedBodies returns the bodies of every message of the recorded
// dumps.
func recordedBodies(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	for _, rec := range recordedDumps(f) {
		for _, d := range diagtest.UnmarshalDatagrams(rec) {
			for len(d) > 0 {
				_, body, rest, err := diag.NextMessage(d)
				if err != nil {
					break
				}
				out = append(out, body)
				d = rest
			}
		}
	}
	return out
}

// FuzzDecodeSocket checks that DecodeSocket never reads past its input and
// that decoding is stable: what it decodes, encoded again, decodes the same.
func FuzzDecodeSocket(f *testing.F) {
	for _, body := range recordedBodies(f) {
		f.Add(body)
	}
	f.Add(make([]byte, 71))
	f.Fuzz(func(t *testing.T, body []byte) {
		var s diag.Socket
		if err := diag.DecodeSocket(body, &s); err != nil {
			if len(body) >= 72 {
				t.Fatalf("rejected a %d-byte body: %v", len(body), err)
			}
			return
		}
		if len(body) < 72 || len(s.Attrs) != len(body)-72 {
			t.Fatalf("accepted %d bytes with %d attribute bytes", len(body), len(s.Attrs))
		}
		var again diag.Socket
		if err := diag.DecodeSocket(diagtest.EncodeSocket(&s), &again); err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if !reflect.DeepEqual(s, again) {
			t.Fatalf("unstable decode:\n%+v\n%+v", s, again)
		}
	})
}

// FuzzDump feeds arbitrary datagrams to a whole dump exchange: it must end
// with sockets and no error only when the stream held an NLMSG_DONE, and
// never count more sockets than messages.
func FuzzDump(f *testing.F) {
	for _, rec := range recordedDumps(f) {
		f.Add(rec)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dgs := diagtest.UnmarshalDatagrams(data)
		tr := &diagtest.Transport{Handler: func(r diagtest.Request) ([][]byte, error) { return dgs, nil }}
		c := diag.NewConn(tr)
		n := 0
		// MethodV2 with one family: one request, so the recorded sequence
		// number 1 matches; the reply type must be 20 or 18 to be decoded.
		for _, req := range []diag.Request{{Family: diag.AFInet6}, {}} {
			st, err := c.Dump(req, func(s *diag.Socket) error {
				n++
				if len(s.Attrs) > len(data) {
					t.Fatalf("impossible socket %+v", s)
				}
				return nil
			})
			if st.Sockets > st.Messages || n != st.Sockets {
				t.Fatalf("stats %+v with %d callbacks", st, n)
			}
			if err == nil && st.Bytes > len(data) {
				t.Fatalf("read %d bytes from %d", st.Bytes, len(data))
			}
			c = diag.NewConn(&diagtest.Transport{Handler: func(r diagtest.Request) ([][]byte, error) { return dgs, nil }})
			n = 0
		}
	})
}

// FuzzNextAttr walks attributes: every accepted attribute fits its input and
// the walk always shrinks the input.
func FuzzNextAttr(f *testing.F) {
	f.Add(diagtest.Attr(diag.AttrShutdown, []byte{3}))
	f.Add(append(diagtest.Attr(diag.AttrInfo, make([]byte, 232)), diagtest.Attr(diag.AttrCong, []byte("cubic\x00"))...))
	f.Add([]byte{4, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		for steps := 0; ; steps++ {
			_, payload, rest, ok, err := diag.NextAttr(b)
			if err != nil || !ok {
				return
			}
			if len(payload)+4 > len(b) || len(rest) >= len(b) {
				t.Fatalf("attribute of %d bytes from %d, %d left", len(payload), len(b), len(rest))
			}
			b = rest
		}
	})
}
