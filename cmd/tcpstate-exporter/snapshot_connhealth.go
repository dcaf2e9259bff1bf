package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
)

// Bounds on the connection-health sections of a snapshot.
const (
	snapshotPeers           = 20
	snapshotClientListeners = 10
	snapshotClients         = 3
)

func joinPorts(ps []uint16) string {
	if len(ps) == 0 {
		return "-"
	}
	out := ""
	for i, p := range ps {
		if i > 0 {
			out += ","
		}
		out += strconv.Itoa(int(p))
	}
	return out
}

func ownerString(pid int, comm string) string {
	if pid == 0 {
		return "-"
	}
	return comm + "/" + strconv.Itoa(pid)
}

// writeConnHealth prints the full sample's stalled peers, the busiest
// clients of the busiest listeners, and the self-connected sockets.
func (s *snapshot) writeConnHealth(w io.Writer) error {
	if s.Full == nil {
		return nil
	}
	full := s.Full
	fmt.Fprintf(w, "\nStalled peers (retransmission timer with at least %d RTO retransmissions, or zero-window probing): %d\n", s.RetransMin, len(full.Peers))
	if len(full.Peers) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "STALL\tFAMILY\tREMOTE\tSOCKETS\tMAX_RETRANS\tSEEN_FOR\tLOCAL_PORTS\tREMOTE_PORTS\tPROCESS")
		for _, g := range full.Peers[:min(len(full.Peers), snapshotPeers)] {
			remote := "other"
			if g.Remote.IsValid() {
				remote = g.Remote.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", g.Stall, g.Family, remote, g.Sockets, g.MaxRetrans,
				full.Time.Sub(g.Since).Round(time.Second), joinPorts(g.LocalPorts), joinPorts(g.RemotePorts), ownerString(g.PID, g.Command))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if more := len(full.Peers) - snapshotPeers; more > 0 {
			fmt.Fprintf(w, "... and %d more\n", more)
		}
	}

	ls := collector.BusiestListeners(full.Clients)
	fmt.Fprintf(w, "\nBusiest clients (live connections, ESTABLISHED and SYN_RECV, of the %d busiest listeners): %d listeners with connections\n", snapshotClientListeners, len(ls))
	if len(ls) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "FAMILY\tADDRESS\tPORT\tCONNECTIONS\tCLIENTS\tCLIENT\tCLIENT_CONNECTIONS\tSHARE")
		for _, lc := range ls[:min(len(ls), snapshotClientListeners)] {
			for _, c := range lc.Top[:min(len(lc.Top), snapshotClients)] {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%d\t%d%%\n", lc.Family, lc.Addr, lc.Port, lc.Connections, lc.Clients, c.Addr, c.Count,
					c.Count*100/max(lc.Connections, 1))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintf(w, "\nSelf-connected sockets (same local and remote address and port): %d\n", full.SelfConnected)
	if len(full.SelfConnects) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "FAMILY\tADDRESS\tPORT\tPROCESS")
		for _, sc := range full.SelfConnects {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", sc.Family, sc.Addr, sc.Port, ownerString(sc.PID, sc.Command))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
