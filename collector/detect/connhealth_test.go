package detect

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag"
)

var (
	deadPeer = netip.MustParseAddr("10.9.0.1")
	client1  = netip.MustParseAddr("10.2.0.1")
)

// healthAt returns a one-summary history at t0 whose full-sample data was
// taken age before.
func healthAt(age time.Duration, fill func(s *Summary)) *History {
	return build(1, time.Second, func(_ int, s *Summary) {
		s.HealthTime = s.Time.Add(-age)
		fill(s)
	})
}

func peer(st Stall, sockets uint64, retrans uint8, since time.Duration) PeerGroup {
	return PeerGroup{Stall: st, Family: diag.AFInet, Remote: deadPeer, Sockets: sockets, MaxRetrans: retrans,
		Since: t0.Add(-since), LocalPorts: []uint16{40001, 40002}, RemotePorts: []uint16{443}, PID: 42, Command: "app"}
}

func TestPeerUnresponsive(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PeerMinSockets = 2
	for _, tc := range []struct {
		name  string
		group PeerGroup
		age   time.Duration
		fire  bool
	}{
		{"below min sockets", peer(StallRetransmit, 1, 6, 0), 0, false},
		{"at min sockets", peer(StallRetransmit, 2, 4, 0), 0, true},
		{"zero window is another alert", peer(StallZeroWindow, 5, 0, time.Hour), 0, false},
		{"the other group names no peer", PeerGroup{Stall: StallRetransmit, Family: diag.AFInet, Sockets: 9}, 0, false},
		{"stale full sample", peer(StallRetransmit, 2, 4, 0), cfg.StaleAfter + time.Second, false},
		{"full sample just fresh", peer(StallRetransmit, 2, 4, 0), cfg.StaleAfter, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := healthAt(tc.age, func(s *Summary) { s.Peers = []PeerGroup{tc.group} })
			fs := PeerUnresponsive(&cfg, h)
			if got := len(fs) == 1; got != tc.fire {
				t.Fatalf("fired %v, want %v: %v", got, tc.fire, fs)
			}
			if !tc.fire {
				return
			}
			f := &fs[0]
			if f.Alert != AlertPeerUnresponsive || f.Labels["remote_address"] != "10.9.0.1" || f.Labels["family"] != "ipv4" || f.Value != 2 {
				t.Errorf("finding %s %v value %v", f.Alert, f.Labels, f.Value)
			}
			checkEvidence(t, f, map[string]string{
				"remote_address": "10.9.0.1", "sockets": "2", "max_retransmissions": "4", "local_ports": "40001,40002",
				"remote_ports": "443", "process": "app (pid 42)", "silent_at_least": "3s", "retransmissions_threshold": "4",
			})
		})
	}
}

func TestPeerZeroWindow(t *testing.T) {
	cfg := DefaultConfig()
	for _, tc := range []struct {
		name  string
		since time.Duration
		fire  bool
	}{
		{"just seen", 0, false},
		{"below the minimum duration", cfg.ZeroWindowMin - time.Second, false},
		{"at the minimum duration", cfg.ZeroWindowMin, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := healthAt(0, func(s *Summary) { s.Peers = []PeerGroup{peer(StallZeroWindow, 3, 1, tc.since)} })
			fs := PeerZeroWindow(&cfg, h)
			if got := len(fs) == 1; got != tc.fire {
				t.Fatalf("fired %v, want %v: %v", got, tc.fire, fs)
			}
			if tc.fire {
				checkEvidence(t, &fs[0], map[string]string{"sockets": "3", "stalled_for": "10s", "max_probes": "1", "process": "app (pid 42)"})
			}
			if fs := PeerUnresponsive(&cfg, h); len(fs) != 0 {
				t.Errorf("zero window fired TCPPeerUnresponsive: %v", fs)
			}
		})
	}
}

func TestClientConnectionHog(t *testing.T) {
	for _, tc := range []struct {
		name        string
		count, conn uint64
		allow       string
		fire        bool
	}{
		{"below the minimum", 99, 100, "", false},
		{"at the minimum and share", 100, 200, "", true},
		{"share just below", 100, 201, "", false},
		{"allow-listed prefix", 150, 160, "10.2.0.0/16", false},
		{"allow-listed address", 150, 160, "192.0.2.1, 10.2.0.1", false},
		{"another prefix allowed", 150, 160, "10.3.0.0/16", true},
		{"default allow-list (loopback) does not cover it", 150, 160, DefaultConfig().ClientHogAllow, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ClientHogAllow = tc.allow
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			h := healthAt(0, func(s *Summary) {
				s.Clients = []ListenerClients{{ListenerKey: web, Connections: tc.conn, Clients: 3,
					Top: []ClientCount{{client1, tc.count}, {netip.MustParseAddr("10.2.0.2"), 1}}}}
			})
			fs := ClientConnectionHog(&cfg, h)
			if got := len(fs) == 1; got != tc.fire {
				t.Fatalf("fired %v, want %v: %v", got, tc.fire, fs)
			}
			if !tc.fire {
				return
			}
			f := &fs[0]
			if f.Labels["client"] != "10.2.0.1" || f.Labels["port"] != "443" || f.Labels["address"] != "10.0.0.1" {
				t.Errorf("labels %v", f.Labels)
			}
			checkEvidence(t, f, map[string]string{"client": "10.2.0.1", "listener": "10.0.0.1:443", "listener_clients": "3"})
			if !strings.Contains(f.Evidence["iptables_connlimit_rule"], "iptables -A INPUT -p tcp --syn --dport 443 -m connlimit --connlimit-above 100 --connlimit-mask 32") ||
				!strings.Contains(f.Evidence["nft_connlimit_rule"], "tcp dport 443 ct state new add @connlimit_443 '{ ip saddr ct count over 100 }'") {
				t.Errorf("rules %q %q", f.Evidence["iptables_connlimit_rule"], f.Evidence["nft_connlimit_rule"])
			}
		})
	}
}

func TestClientConnectionHogIPv6Rules(t *testing.T) {
	nft, ipt := connlimitRules(ListenerKey{Family: diag.AFInet6, Addr: netip.IPv6Unspecified(), Port: 8080}, 50)
	if !strings.HasPrefix(ipt, "ip6tables ") || !strings.Contains(ipt, "--connlimit-mask 128") || !strings.Contains(nft, "ip6 saddr ct count over 50") || !strings.Contains(nft, "ipv6_addr") {
		t.Errorf("IPv6 rules: %q, %q", nft, ipt)
	}
}

func TestSelfConnect(t *testing.T) {
	cfg := DefaultConfig()
	lo := netip.MustParseAddr("127.0.0.1")
	h := healthAt(0, func(s *Summary) {
		s.SelfConnects = []SelfConnectedSocket{
			{Family: diag.AFInet, Addr: lo, Port: 40004, PID: 7, Command: "retrier"},
			{Family: diag.AFInet, Addr: netip.MustParseAddr("10.0.0.1"), Port: 40004},
			{Family: diag.AFInet, Addr: lo, Port: 40006},
		}
	})
	fs := SelfConnect(&cfg, h)
	if len(fs) != 2 {
		t.Fatalf("%d findings, want one per port: %v", len(fs), fs)
	}
	if fs[0].Labels["port"] != "40004" || fs[0].Value != 2 {
		t.Errorf("first finding %v value %v", fs[0].Labels, fs[0].Value)
	}
	checkEvidence(t, &fs[0], map[string]string{"port": "40004", "process": "retrier (pid 7)", "sockets": "2", "address": "127.0.0.1"})
	checkEvidence(t, &fs[1], map[string]string{"port": "40006", "process": "unknown"})
	if fs := SelfConnect(&cfg, healthAt(0, func(*Summary) {})); len(fs) != 0 {
		t.Errorf("no self-connected socket: %v", fs)
	}
}

func TestSynRecvSurgeRetransmittedEvidence(t *testing.T) {
	cfg := DefaultConfig()
	h := build(1, time.Second, func(_ int, s *Summary) {
		l := lst(web, 128, 0, 128)
		l.SynRecvRetransmitted = 120
		s.Listeners = []Listener{l}
	})
	fs := SynRecvSurge(&cfg, h)
	if len(fs) != 1 {
		t.Fatalf("findings %v", fs)
	}
	checkEvidence(t, &fs[0], map[string]string{"retransmitted_handshakes": "120"})
	if !strings.Contains(fs[0].Description, "120 of the handshakes had their SYN-ACK retransmitted") {
		t.Errorf("description %q", fs[0].Description)
	}
}

func TestConnHealthConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"retransmits zero", func(c *Config) { c.PeerRetransMin = 0 }, "peer retransmits"},
		{"retransmits above a byte", func(c *Config) { c.PeerRetransMin = 256 }, "peer retransmits"},
		{"min sockets zero", func(c *Config) { c.PeerMinSockets = 0 }, "peer min sockets"},
		{"negative zero-window duration", func(c *Config) { c.ZeroWindowMin = -time.Second }, "zero window"},
		{"hog min zero", func(c *Config) { c.ClientHogMin = 0 }, "client hog min"},
		{"hog share above 1", func(c *Config) { c.ClientHogShare = 1.5 }, "client hog share"},
		{"bad allow-list", func(c *Config) { c.ClientHogAllow = "10.0.0.0/8,nonsense" }, "nonsense"},
		{"bad allow-list prefix", func(c *Config) { c.ClientHogAllow = "10.0.0.0/33" }, "10.0.0.0/33"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
	c := DefaultConfig()
	c.ClientHogAllow = " 10.0.0.0/8 , 2001:db8::/32,192.0.2.7 "
	if err := c.Validate(); err != nil {
		t.Errorf("valid allow-list: %v", err)
	}
}

func TestClientConnectionHogLoopbackAllowedByDefault(t *testing.T) {
	cfg := DefaultConfig()
	for _, a := range []string{"127.0.0.1", "127.0.0.6", "::1"} {
		h := healthAt(0, func(s *Summary) {
			s.Clients = []ListenerClients{{ListenerKey: web, Connections: 500, Clients: 1, Top: []ClientCount{{netip.MustParseAddr(a), 500}}}}
		})
		if fs := ClientConnectionHog(&cfg, h); len(fs) != 0 {
			t.Errorf("loopback client %s fired with the default allow-list: %v", a, fs)
		}
	}
}
