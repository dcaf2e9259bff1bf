package detect

import (
	"net/netip"
	"strconv"
)

// connlimitRules returns the nft and iptables rules that cap the
// connections of any one source address to a listener's port at limit.
func connlimitRules(l ListenerKey, limit uint64) (nft, iptables string) {
	port := strconv.Itoa(int(l.Port))
	lim := fmtUint(limit)
	fam, ipt, mask, saddr := "ipv4_addr", "iptables", "32", "ip saddr"
	if l.Family.String() == "ipv6" {
		fam, ipt, mask, saddr = "ipv6_addr", "ip6tables", "128", "ip6 saddr"
	}
	nft = "nft add set inet filter connlimit_" + port + " '{ type " + fam + "; flags dynamic; }'; " +
		"nft add rule inet filter input tcp dport " + port + " ct state new add @connlimit_" + port +
		" '{ " + saddr + " ct count over " + lim + " }' reject with tcp reset"
	iptables = ipt + " -A INPUT -p tcp --syn --dport " + port + " -m connlimit --connlimit-above " + lim +
		" --connlimit-mask " + mask + " -j REJECT --reject-with tcp-reset"
	return nft, iptables
}

// allowed reports whether a lies in one of ps.
func allowed(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientConnectionHog finds remote addresses that hold at least
// ClientHogMin live connections (ESTABLISHED and SYN_RECV) of a listener
// and at least ClientHogShare of the listener's, outside the
// ClientHogAllow prefixes. Warning severity.
func ClientConnectionHog(cfg *Config, h *History) []Finding {
	cur := h.Latest()
	if cur == nil || !healthFresh(cfg, cur) {
		return nil
	}
	var out []Finding
	var allow []netip.Prefix
	parsed := false
	for i := range cur.Clients {
		lc := &cur.Clients[i]
		for _, c := range lc.Top {
			share := float64(c.Count) / float64(max(lc.Connections, 1))
			if c.Count < cfg.ClientHogMin || share < cfg.ClientHogShare {
				continue
			}
			if !parsed {
				// Validate checked the list.
				allow, _ = ParsePrefixes(cfg.ClientHogAllow)
				parsed = true
			}
			if allowed(allow, c.Addr) {
				continue
			}
			name := listenerAddr(lc.ListenerKey)
			client := c.Addr.String()
			nft, ipt := connlimitRules(lc.ListenerKey, cfg.ClientHogMin)
			labels := listenerLabels(lc.ListenerKey)
			labels["client"] = client
			out = append(out, Finding{
				Alert:    AlertClientConnectionHog,
				Severity: Warning,
				Labels:   labels,
				Summary:  "Client " + client + " holds " + fmtUint(c.Count) + " of the " + fmtUint(lc.Connections) + " connections of " + name,
				Description: "Remote address " + client + " holds " + fmtUint(c.Count) + " live connections (ESTABLISHED or SYN_RECV) of listener " + name +
					", " + fmtFloat(100*share) + "% of its " + fmtUint(lc.Connections) + " from " + strconv.Itoa(lc.Clients) +
					" clients: one client can exhaust the server's workers or file descriptors. Cap it per source address with a connlimit rule, or allow-list it (--detect.client-hog.allow) if it is a NAT gateway or proxy.",
				Evidence: map[string]string{
					"client":                  client,
					"listener":                name,
					"client_connections":      fmtUint(c.Count),
					"listener_connections":    fmtUint(lc.Connections),
					"share":                   fmtFloat(share),
					"listener_clients":        strconv.Itoa(lc.Clients),
					"nft_connlimit_rule":      nft,
					"iptables_connlimit_rule": ipt,
					"sample_age":              fmtDuration(cur.Time.Sub(cur.HealthTime)),
				},
				Value: float64(c.Count),
				For:   cfg.ClientHogFor,
			})
		}
	}
	return out
}
