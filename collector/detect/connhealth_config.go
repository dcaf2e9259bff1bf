package detect

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// validateConnHealth checks the thresholds of the connection-health
// detectors.
func (c *Config) validateConnHealth() error {
	switch {
	case c.PeerRetransMin < 1 || c.PeerRetransMin > 255:
		return fmt.Errorf("detect: peer retransmits=%d: must be between 1 and 255", c.PeerRetransMin)
	case c.PeerMinSockets < 1:
		return errors.New("detect: peer min sockets must be at least 1")
	case c.PeerFor < 0:
		return fmt.Errorf("detect: peer for=%v: must not be negative", c.PeerFor)
	case c.ZeroWindowMin < 0:
		return fmt.Errorf("detect: zero window min duration=%v: must not be negative", c.ZeroWindowMin)
	case c.ClientHogMin < 1:
		return errors.New("detect: client hog min connections must be at least 1")
	case !(c.ClientHogShare > 0 && c.ClientHogShare <= 1):
		return fmt.Errorf("detect: client hog share=%v: must be a ratio in (0, 1]", c.ClientHogShare)
	case c.ClientHogFor < 0:
		return fmt.Errorf("detect: client hog for=%v: must not be negative", c.ClientHogFor)
	}
	_, err := ParsePrefixes(c.ClientHogAllow)
	return err
}

// ParsePrefixes parses a comma-separated list of CIDR prefixes (a bare
// address is a /32 or /128); the empty string is the empty list.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("detect: client hog allow-list: %q: %w", f, err)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("detect: client hog allow-list: %q: %w", f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
