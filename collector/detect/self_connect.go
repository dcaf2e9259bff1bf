package detect

import "strconv"

// SelfConnect finds local ports held by a socket connected to itself (same
// local and remote address and port): a client retrying connect() to a
// port of the ephemeral range on which nothing listened got its own port,
// and now holds the port a server wants. One finding per family and port,
// warning severity.
func SelfConnect(cfg *Config, h *History) []Finding {
	cur := h.Latest()
	if cur == nil || !healthFresh(cfg, cur) {
		return nil
	}
	type key struct {
		fam  string
		port uint16
	}
	idx := map[key]int{}
	var out []Finding
	for i := range cur.SelfConnects {
		sc := &cur.SelfConnects[i]
		k := key{sc.Family.String(), sc.Port}
		if j, ok := idx[k]; ok {
			out[j].Value++
			out[j].Evidence["sockets"] = strconv.Itoa(int(out[j].Value))
			continue
		}
		port := strconv.Itoa(int(sc.Port))
		owner := fmtOwner(sc.PID, sc.Command)
		idx[k] = len(out)
		out = append(out, Finding{
			Alert:    AlertSelfConnect,
			Severity: Warning,
			Labels:   map[string]string{"family": k.fam, "port": port},
			Summary:  "Socket connected to itself on " + sc.Addr.String() + " port " + port + " (" + owner + ")",
			Description: "A socket of " + owner + " is connected to itself: local and remote are both " + sc.Addr.String() + ":" + port +
				". A client retried connect() to a local port in ip_local_port_range on which nothing listened, and the kernel picked that same port as the source; " +
				"the socket now holds the port, so the server that should listen on it cannot bind.",
			Evidence: map[string]string{
				"port":       port,
				"address":    sc.Addr.String(),
				"process":    owner,
				"sockets":    "1",
				"sample_age": fmtDuration(cur.Time.Sub(cur.HealthTime)),
			},
			Value: 1,
		})
	}
	return out
}
