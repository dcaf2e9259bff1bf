package diag_test

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/diagtest"
)

// tcpInfoBytes builds a tcp_info of length n with the fields DecodeTCPInfo
// reads set to recognisable values (where n reaches them).
func tcpInfoBytes(n int) []byte {
	b := make([]byte, n)
	put := func(off int, v uint32) {
		if off+4 <= n {
			binary.NativeEndian.PutUint32(b[off:], v)
		}
	}
	if n > 4 {
		b[0], b[2], b[3], b[4] = byte(diag.Established), 3, 2, 1
	}
	put(24, 7)
	put(44, 1000)
	put(52, 2000)
	put(56, 3000)
	put(68, 450)
	put(72, 90)
	return b
}

// TestDecodeTCPInfoLengths checks the length edges: shorter than the times
// fails with ErrTruncated, the times alone decode without RTT, and the
// kernel's current and a longer future struct decode in full.
func TestDecodeTCPInfoLengths(t *testing.T) {
	for _, tc := range []struct {
		n       int
		ok, rtt bool
	}{
		{0, false, false},
		{diag.TCPInfoMinLen - 1, false, false},
		{diag.TCPInfoMinLen, true, false},
		{75, true, false},
		{76, true, true},
		{104, true, true}, // Linux 2.6.10
		{280, true, true}, // Linux 6.18 (it grows at the end)
		{512, true, true}, // a future kernel
	} {
		var ti diag.TCPInfo
		err := diag.DecodeTCPInfo(tcpInfoBytes(tc.n), &ti)
		if tc.ok != (err == nil) {
			t.Errorf("%d bytes: err %v, want ok %v", tc.n, err, tc.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, diag.ErrTruncated) {
				t.Errorf("%d bytes: %v does not wrap ErrTruncated", tc.n, err)
			}
			continue
		}
		want := diag.TCPInfo{State: diag.Established, Retransmits: 3, Probes: 2, Backoff: 1, Unacked: 7,
			LastDataSent: 1000, LastDataRecv: 2000, LastAckRecv: 3000, Len: tc.n}
		if tc.rtt {
			want.RTT, want.RTTVar, want.HasRTT = 450, 90, true
		}
		if ti != want {
			t.Errorf("%d bytes: got %+v, want %+v", tc.n, ti, want)
		}
		if ti.LastRecv() != 2000 {
			t.Errorf("%d bytes: LastRecv %d, want 2000", tc.n, ti.LastRecv())
		}
	}
}

// TestSocketTCPInfo finds INET_DIAG_INFO among other attributes, reports a
// reply without it as absent, and a broken attribute list as an error.
func TestSocketTCPInfo(t *testing.T) {
	info := tcpInfoBytes(232)
	var attrs []byte
	attrs = append(attrs, diagtest.Attr(diag.AttrShutdown, []byte{0})...)
	attrs = append(attrs, diagtest.Attr(diag.AttrInfo, info)...)
	attrs = append(attrs, diagtest.Attr(diag.AttrCong, []byte("cubic\x00"))...)
	var ti diag.TCPInfo
	s := diag.Socket{Attrs: attrs}
	if ok, err := s.TCPInfo(&ti); !ok || err != nil || ti.LastAckRecv != 3000 {
		t.Fatalf("TCPInfo = %v, %v, %+v", ok, err, ti)
	}
	s.Attrs = diagtest.Attr(diag.AttrShutdown, []byte{0})
	if ok, err := s.TCPInfo(&ti); ok || err != nil {
		t.Errorf("without INET_DIAG_INFO: %v, %v", ok, err)
	}
	s.Attrs = []byte{200, 0, 2, 0}
	if ok, err := s.TCPInfo(&ti); ok || !errors.Is(err, diag.ErrTruncated) {
		t.Errorf("broken attribute: %v, %v", ok, err)
	}
	s.Attrs = diagtest.Attr(diag.AttrInfo, info[:40])
	if ok, err := s.TCPInfo(&ti); ok || !errors.Is(err, diag.ErrTruncated) {
		t.Errorf("short tcp_info: %v, %v", ok, err)
	}
}

// TestTCPInfoAllocs checks that finding and decoding tcp_info allocates
// nothing: the sweep runs it for every ESTABLISHED socket.
func TestTCPInfoAllocs(t *testing.T) {
	s := diag.Socket{Attrs: append(diagtest.Attr(diag.AttrShutdown, []byte{0}), diagtest.Attr(diag.AttrInfo, tcpInfoBytes(232))...)}
	var ti diag.TCPInfo
	if n := testing.AllocsPerRun(100, func() {
		if ok, err := s.TCPInfo(&ti); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per decode, want 0", n)
	}
}

// recordedTCPInfos returns the INET_DIAG_INFO payloads of the recorded
// dumps and the recorded tcp_info seeds (see TestRecordTCPInfo).
func recordedTCPInfos(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	for _, body := range recordedBodies(f) {
		var s diag.Socket
		if diag.DecodeSocket(body, &s) != nil {
			continue
		}
		if p, ok, _ := diag.FindAttr(s.Attrs, diag.AttrInfo); ok {
			out = append(out, p)
		}
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "tcpinfo-*.bin"))
	if len(files) == 0 {
		f.Fatal("no recorded tcp_info in testdata; run go test -run TestRecordTCPInfo ./diag -args -update-testdata")
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzDecodeTCPInfo checks that DecodeTCPInfo never reads past its input,
// accepts exactly the payloads of at least TCPInfoMinLen bytes, and reads
// each field from its offset whatever the length.
func FuzzDecodeTCPInfo(f *testing.F) {
	for _, p := range recordedTCPInfos(f) {
		f.Add(p)
	}
	f.Add(tcpInfoBytes(diag.TCPInfoMinLen))
	f.Add(make([]byte, diag.TCPInfoMinLen-1))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ti diag.TCPInfo
		err := diag.DecodeTCPInfo(b, &ti)
		if (err == nil) != (len(b) >= diag.TCPInfoMinLen) {
			t.Fatalf("%d bytes: err %v", len(b), err)
		}
		if err != nil {
			return
		}
		if ti.Len != len(b) || ti.HasRTT != (len(b) >= 76) ||
			ti.LastAckRecv != binary.NativeEndian.Uint32(b[56:60]) || ti.LastDataRecv != binary.NativeEndian.Uint32(b[52:56]) ||
			ti.LastDataSent != binary.NativeEndian.Uint32(b[44:48]) || ti.State != diag.State(b[0]) {
			t.Fatalf("%d bytes decoded as %+v", len(b), ti)
		}
		if ti.HasRTT && ti.RTT != binary.NativeEndian.Uint32(b[68:72]) {
			t.Fatalf("rtt %d", ti.RTT)
		}
		// The same payload as an attribute of a socket decodes the same.
		s := diag.Socket{Attrs: diagtest.Attr(diag.AttrInfo, b)}
		var again diag.TCPInfo
		if len(b) <= 0xffff-4 {
			if ok, err := s.TCPInfo(&again); !ok || err != nil || again != ti {
				t.Fatalf("as an attribute: %v, %v, %+v", ok, err, again)
			}
		}
	})
}
