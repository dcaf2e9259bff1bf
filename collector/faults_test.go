package collector

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/diagtest"
)

// TestKernelFaultsNeverPublishHalfSamples injects kernel faults through the
// netlink test seam after a good sample: each makes the sample fail with a
// clear error and a counted dump error, the previous sample stays the one
// reported (never a partial count), and the next cycle dials afresh and
// recovers.
func TestKernelFaultsNeverPublishHalfSamples(t *testing.T) {
	good := []diag.Socket{
		listener(diag.AFInet, v4any, 80, 0, 128),
		sock(diag.AFInet, diag.Established, v4lo, 80, v4lo, 40000),
		sock(diag.AFInet, diag.Established, v4lo, 40000, v4lo, 80),
	}
	faults := []struct {
		name  string
		reply func(r diagtest.Request) ([][]byte, error)
		is    error
	}{
		{"inet_diag missing", func(r diagtest.Request) ([][]byte, error) {
			return [][]byte{diagtest.Error(r.Seq, -int32(syscall.ENOENT))}, nil
		}, diag.ErrUnavailable},
		{"permission denied", func(r diagtest.Request) ([][]byte, error) {
			return [][]byte{diagtest.Error(r.Seq, -int32(syscall.EPERM))}, nil
		}, os.ErrPermission},
		{"error in NLMSG_DONE after some sockets", func(r diagtest.Request) ([][]byte, error) {
			return [][]byte{diagtest.Datagram(diagtest.SocketMessage(r.Type, r.Seq, &good[1]), diagtest.Done(r.Seq, -int32(syscall.EINTR)))}, nil
		}, syscall.EINTR},
		{"truncated message mid-dump", func(r diagtest.Request) ([][]byte, error) {
			m := diagtest.SocketMessage(r.Type, r.Seq, &good[2])
			return [][]byte{diagtest.SocketMessage(r.Type, r.Seq, &good[1]), m[:50]}, nil
		}, diag.ErrTruncated},
		{"oversized datagram", func(r diagtest.Request) ([][]byte, error) {
			return [][]byte{diagtest.SocketMessage(r.Type, r.Seq, &good[1]), make([]byte, diag.DefaultBufferSize+100)}, nil
		}, diag.ErrTruncated},
		{"namespace gone mid-dump", func(r diagtest.Request) ([][]byte, error) {
			return [][]byte{diagtest.SocketMessage(r.Type, r.Seq, &good[1])}, nil // then the socket fails
		}, syscall.EBADF},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			faulty := false
			s := NewSampler(SamplerOptions{Dial: func() (*diag.Conn, error) {
				if faulty {
					return diag.NewConn(&diagtest.Transport{Handler: f.reply, RecvErr: syscall.EBADF}), nil
				}
				return fakeDial(good)()
			}})
			if _, err := s.Sample(Full); err != nil {
				t.Fatal(err)
			}
			before := s.View(time.Now())
			s.Close() // the next sample dials the faulty kernel
			faulty = true
			smp, err := s.Sample(Full)
			if err == nil || smp != nil {
				t.Fatalf("sample over a faulty kernel: %v, %v; want an error and no sample", smp, err)
			}
			if !errors.Is(err, f.is) {
				t.Errorf("error %q is not %v", err, f.is)
			}
			after := s.View(time.Now())
			if after.Counts != before.Counts || after.Full != before.Full {
				t.Errorf("a failed dump changed the published sample: %v -> %v", before.Counts, after.Counts)
			}
			if after.Stats[Full].Errors != 1 || after.Stats[Full].Dumps != 2 {
				t.Errorf("stats %+v: want 2 dumps, 1 error", after.Stats[Full])
			}
			faulty = false
			if _, err := s.Sample(Full); err != nil {
				t.Fatalf("no recovery after the fault: %v", err)
			}
			v := s.View(time.Now())
			if got := v.Counts.Get(diag.AFInet, diag.Established); got != 2 {
				t.Errorf("after recovery: %d established, want 2", got)
			}
		})
	}
}
