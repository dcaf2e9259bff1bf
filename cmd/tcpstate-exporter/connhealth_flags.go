package main

import (
	"fmt"
	"strconv"

	"github.com/alecthomas/kingpin/v2"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
)

// addConnHealthFlags registers the connection-health detectors' flags and
// the limits of their series.
func addConnHealthFlags(app *kingpin.Application, f *detectFlags) {
	d := detect.DefaultConfig()
	u64 := func(v uint64) string { return strconv.FormatUint(v, 10) }
	app.Flag("collector.peers.max", "Stalled peers (remote addresses with retransmitting or zero-window sockets) reported per namespace, most stalled sockets first; the rest fold into remote_address \"other\".").
		Default("20").IntVar(&f.peersMax)
	app.Flag("collector.clients.max", "Clients reported per listener in tcpstate_listener_client_connections, most connections first; the rest fold into client \"other\".").
		Default("3").IntVar(&f.clientsMax)
	app.Flag("detect.peer.retransmits", "Consecutive RTO retransmissions from which a socket counts as stalled towards its peer (TCPPeerUnresponsive); 1-255.").
		Default(u64(d.PeerRetransMin)).Uint64Var(&f.cfg.PeerRetransMin)
	app.Flag("detect.peer.min-sockets", "Stalled sockets towards one remote address that fire TCPPeerUnresponsive or TCPPeerZeroWindow.").
		Default(u64(d.PeerMinSockets)).Uint64Var(&f.cfg.PeerMinSockets)
	app.Flag("detect.zero-window.min-duration", "How long sockets towards one remote address must probe a zero window, in every full sample, to fire TCPPeerZeroWindow.").
		Default(d.ZeroWindowMin.String()).DurationVar(&f.cfg.ZeroWindowMin)
	app.Flag("detect.client-hog.min-connections", "Live connections of one client to one listener that, with --detect.client-hog.share, fire TCPClientConnectionHog.").
		Default(u64(d.ClientHogMin)).Uint64Var(&f.cfg.ClientHogMin)
	app.Flag("detect.client-hog.share", "Share of a listener's live connections held by one client that, with --detect.client-hog.min-connections, fires TCPClientConnectionHog.").
		Default(strconv.FormatFloat(d.ClientHogShare, 'g', -1, 64)).Float64Var(&f.cfg.ClientHogShare)
	app.Flag("detect.client-hog.allow", "Comma-separated client addresses or CIDR prefixes (NAT gateways, proxies, load balancers) that never fire TCPClientConnectionHog.").
		Default(d.ClientHogAllow).StringVar(&f.cfg.ClientHogAllow)
}

// validateConnHealth checks the connection-health flags, naming the flag
// at fault.
func (f *detectFlags) validateConnHealth() error {
	c := &f.cfg
	switch {
	case f.peersMax < 1:
		return fmt.Errorf("--collector.peers.max=%d: must be at least 1", f.peersMax)
	case f.clientsMax < 1:
		return fmt.Errorf("--collector.clients.max=%d: must be at least 1", f.clientsMax)
	case c.PeerRetransMin < 1 || c.PeerRetransMin > 255:
		return fmt.Errorf("--detect.peer.retransmits=%d: must be between 1 and 255", c.PeerRetransMin)
	case c.PeerMinSockets < 1:
		return fmt.Errorf("--detect.peer.min-sockets=%d: must be at least 1", c.PeerMinSockets)
	case c.ZeroWindowMin < 0:
		return fmt.Errorf("--detect.zero-window.min-duration=%v: must not be negative", c.ZeroWindowMin)
	case c.ClientHogMin < 1:
		return fmt.Errorf("--detect.client-hog.min-connections=%d: must be at least 1", c.ClientHogMin)
	case !(c.ClientHogShare > 0 && c.ClientHogShare <= 1):
		return fmt.Errorf("--detect.client-hog.share=%v: must be a ratio in (0, 1]", c.ClientHogShare)
	}
	if _, err := detect.ParsePrefixes(c.ClientHogAllow); err != nil {
		return fmt.Errorf("--detect.client-hog.allow: %w", err)
	}
	return nil
}
