package diag_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/diagtest"
)

func sampleSockets() []diag.Socket {
	return []diag.Socket{
		{Family: diag.AFInet, State: diag.Listen, Src: netip.MustParseAddr("0.0.0.0"), Dst: netip.IPv4Unspecified(), SrcPort: 80, RQueue: 3, WQueue: 128, Inode: 4242, Cookie: 0x1122334455667788, UID: 33},
		{Family: diag.AFInet, State: diag.Established, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 80, DstPort: 40000, Timer: diag.TimerKeepalive, Expires: 1500, Retrans: 2, Interface: 3, Inode: 99},
		{Family: diag.AFInet6, State: diag.TimeWait, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), SrcPort: 33000, DstPort: 443, Timer: diag.TimerTimeWait, Expires: 59000},
		{Family: diag.AFInet6, State: diag.SynRecv, Src: netip.MustParseAddr("::1"), Dst: netip.MustParseAddr("::1"), SrcPort: 8080, DstPort: 51000, Attrs: diagtest.Attr(diag.AttrShutdown, []byte{1})},
	}
}

func replyWith(socks []diag.Socket, perDatagram int) func(diagtest.Request) ([][]byte, error) {
	return func(r diagtest.Request) ([][]byte, error) {
		return diagtest.Reply(r, perDatagram, socks), nil
	}
}

func collect(t *testing.T, c *diag.Conn, req diag.Request) ([]diag.Socket, diag.Stats, error) {
	t.Helper()
	var got []diag.Socket
	st, err := c.Dump(req, func(s *diag.Socket) error {
		cp := *s
		cp.Attrs = append([]byte(nil), s.Attrs...)
		got = append(got, cp)
		return nil
	})
	return got, st, err
}

func TestDumpDecodesEveryField(t *testing.T) {
	want := sampleSockets()
	tr := &diagtest.Transport{Handler: replyWith(want, 3)}
	c := diag.NewConn(tr)
	got, st, err := collect(t, c, diag.Request{})
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	if len(got) != len(want) || st.Sockets != len(want) {
		t.Fatalf("got %d sockets (stats %d), want %d", len(got), st.Sockets, len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if len(w.Attrs) == 0 {
			w.Attrs = []byte{}
		}
		if g.Family != w.Family || g.State != w.State || g.Src != w.Src || g.Dst != w.Dst ||
			g.SrcPort != w.SrcPort || g.DstPort != w.DstPort || g.Timer != w.Timer || g.Retrans != w.Retrans ||
			g.Interface != w.Interface || g.Cookie != w.Cookie || g.Expires != w.Expires ||
			g.RQueue != w.RQueue || g.WQueue != w.WQueue || g.UID != w.UID || g.Inode != w.Inode ||
			string(g.Attrs) != string(w.Attrs) {
			t.Errorf("socket %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	if st.Datagrams != 2 || st.Messages != 5 || st.Skipped != 0 {
		t.Errorf("stats = %+v, want 2 datagrams, 5 messages, 0 skipped", st)
	}
}

func TestRequestFormats(t *testing.T) {
	tests := []struct {
		name  string
		req   diag.Request
		types []uint16
		fams  []byte
		size  int
	}{
		{"auto both families is one legacy walk", diag.Request{States: diag.RareStates}, []uint16{18}, nil, 60},
		{"v2 both families is two requests", diag.Request{States: diag.RareStates, Method: diag.MethodV2}, []uint16{20, 20}, []byte{2, 10}, 56},
		{"v2 one family", diag.Request{States: diag.RareStates, Family: diag.AFInet6}, []uint16{20}, []byte{10}, 56},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := &diagtest.Transport{}
			if _, err := diag.NewConn(tr).Dump(tc.req, func(*diag.Socket) error { return nil }); err != nil {
				t.Fatal(err)
			}
			reqs := tr.Requests()
			if len(reqs) != len(tc.types) {
				t.Fatalf("sent %d requests, want %d", len(reqs), len(tc.types))
			}
			for i, r := range reqs {
				if r.Type != tc.types[i] || len(r.Payload) != tc.size {
					t.Fatalf("request %d: type %d size %d, want %d size %d", i, r.Type, len(r.Payload), tc.types[i], tc.size)
				}
				var states uint32
				if r.Type == 18 {
					states = binary.NativeEndian.Uint32(r.Payload[52:56])
				} else {
					states = binary.NativeEndian.Uint32(r.Payload[4:8])
					if r.Payload[0] != tc.fams[i] || r.Payload[1] != 6 {
						t.Errorf("request %d: family %d protocol %d", i, r.Payload[0], r.Payload[1])
					}
				}
				if states != uint32(diag.RareStates) {
					t.Errorf("request %d: states %#x, want %#x", i, states, uint32(diag.RareStates))
				}
			}
		})
	}
	if _, err := diag.NewConn(&diagtest.Transport{}).Dump(diag.Request{Family: diag.AFInet, Method: diag.MethodLegacy}, nil); err == nil {
		t.Error("legacy request for one family: no error")
	}
	if _, err := diag.NewConn(&diagtest.Transport{}).Dump(diag.Request{Family: 7}, nil); err == nil {
		t.Error("unknown family: no error")
	}
}

func TestDumpErrors(t *testing.T) {
	socks := sampleSockets()
	tests := []struct {
		name    string
		handler func(diagtest.Request) ([][]byte, error)
		is      []error
		sockets int
	}{
		{"permission in NLMSG_ERROR", func(r diagtest.Request) ([][]byte, error) {
			return [][]byte{diagtest.Error(r.Seq, -int32(syscall.EPERM))}, nil
		}, []error{os.ErrPermission, syscall.EPERM}, 0},
		{"inet_diag missing", func(r diagtest.Request) ([][]byte, error) {
			return [][]byte{diagtest.Error(r.Seq, -int32(syscall.ENOENT))}, nil
		}, []error{diag.ErrUnavailable}, 0},
		{"legacy request unsupported", func(r diagtest.Request) ([][]byte, error) {
			return [][]byte{diagtest.Error(r.Seq, -int32(syscall.EOPNOTSUPP))}, nil
		}, []error{diag.ErrUnavailable}, 0},
		{"error inside NLMSG_DONE after sockets", func(r diagtest.Request) ([][]byte, error) {
			return [][]byte{diagtest.Datagram(diagtest.SocketMessage(r.Type, r.Seq, &socks[0]), diagtest.Done(r.Seq, -int32(syscall.ENOBUFS)))}, nil
		}, []error{syscall.ENOBUFS}, 1},
		{"truncated message", func(r diagtest.Request) ([][]byte, error) {
			m := diagtest.SocketMessage(r.Type, r.Seq, &socks[1])
			return [][]byte{m[:40]}, nil
		}, []error{diag.ErrTruncated}, 0},
		{"short inet_diag_msg", func(r diagtest.Request) ([][]byte, error) {
			return [][]byte{diagtest.Message(r.Type, 2, r.Seq, make([]byte, 60))}, nil
		}, []error{diag.ErrTruncated}, 0},
		{"oversized datagram", func(r diagtest.Request) ([][]byte, error) {
			return [][]byte{make([]byte, diag.DefaultBufferSize+1)}, nil
		}, []error{diag.ErrTruncated}, 0},
		{"dump never ends", func(r diagtest.Request) ([][]byte, error) {
			return [][]byte{diagtest.SocketMessage(r.Type, r.Seq, &socks[0])}, nil
		}, []error{os.ErrDeadlineExceeded}, 1},
		{"send fails", func(r diagtest.Request) ([][]byte, error) {
			return nil, syscall.ENOBUFS
		}, []error{syscall.ENOBUFS}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := diag.NewConn(&diagtest.Transport{Handler: tc.handler})
			n := 0
			st, err := c.Dump(diag.Request{}, func(*diag.Socket) error { n++; return nil })
			if err == nil {
				t.Fatal("Dump succeeded, want an error")
			}
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("error %q is not %v", err, target)
				}
			}
			if n != tc.sockets || st.Sockets != tc.sockets {
				t.Errorf("callback saw %d sockets (stats %d), want %d", n, st.Sockets, tc.sockets)
			}
			if _, err := c.Dump(diag.Request{}, func(*diag.Socket) error { return nil }); !errors.Is(err, diag.ErrClosed) {
				t.Errorf("Dump after failure: %v, want ErrClosed", err)
			}
		})
	}
}

func TestDumpSkipsStaleAndForeignMessages(t *testing.T) {
	socks := sampleSockets()
	tr := &diagtest.Transport{Handler: func(r diagtest.Request) ([][]byte, error) {
		return [][]byte{
			diagtest.Datagram(
				diagtest.SocketMessage(r.Type, r.Seq-1, &socks[0]), // left over from an earlier dump
				diagtest.Message(1, 0, r.Seq, nil),                 // NLMSG_NOOP
				diagtest.SocketMessage(r.Type, r.Seq, &socks[1]),
				diagtest.Message(r.Type, 2|0x10, r.Seq, diagtest.EncodeSocket(&socks[2])), // NLM_F_DUMP_INTR
			),
			diagtest.Done(r.Seq, 0),
		}, nil
	}}
	got, st, err := collect(t, diag.NewConn(tr), diag.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].State != diag.Established || got[1].State != diag.TimeWait {
		t.Fatalf("got %d sockets %+v, want the established and time_wait ones", len(got), got)
	}
	if st.Skipped != 2 || !st.Interrupted {
		t.Errorf("stats %+v: want 2 skipped and Interrupted", st)
	}
}

func TestCallbackErrorStopsDump(t *testing.T) {
	stop := errors.New("enough")
	tr := &diagtest.Transport{Handler: replyWith(sampleSockets(), 1)}
	c := diag.NewConn(tr)
	n := 0
	_, err := c.Dump(diag.Request{}, func(*diag.Socket) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Fatalf("err %v after %d sockets, want %v after 2", err, n, stop)
	}
	c.Close()
	if !tr.Closed() {
		t.Error("Close did not close the transport")
	}
}

// TestDumpAllocationsIndependentOfSocketCount checks the streaming promise:
// a dump of 20000 sockets allocates no more than a dump of 20.
func TestDumpAllocationsIndependentOfSocketCount(t *testing.T) {
	// Measure the dump alone, with replies built beforehand.
	measure := func(n int) float64 {
		socks := make([]diag.Socket, n)
		for i := range socks {
			socks[i] = sampleSockets()[i%3]
		}
		const runs = 5
		replies := make([][][]byte, runs+2)
		for i := range replies {
			replies[i] = diagtest.Reply(diagtest.Request{Type: 18, Seq: uint32(i + 1)}, 250, socks)
		}
		next := 0
		tr := &diagtest.Transport{Handler: func(r diagtest.Request) ([][]byte, error) { d := replies[next]; next++; return d, nil }}
		c := diag.NewConn(tr)
		fn := func(*diag.Socket) error { return nil }
		return testing.AllocsPerRun(runs, func() {
			if _, err := c.Dump(diag.Request{}, fn); err != nil {
				t.Fatal(err)
			}
		})
	}
	small, large := measure(20), measure(20000)
	t.Logf("allocations per dump: %.0f at 20 sockets, %.0f at 20000", small, large)
	if large > small {
		t.Errorf("a 20000-socket dump allocates %.0f times, a 20-socket dump %.0f: allocations grow with sockets", large, small)
	}
}
