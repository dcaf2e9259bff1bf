package detect

// PeerZeroWindow finds remote addresses towards which at least
// PeerMinSockets sockets probe a zero window and have done so in every
// full sample for at least ZeroWindowMin: the peer is alive but its
// application does not read. Warning severity.
func PeerZeroWindow(cfg *Config, h *History) []Finding {
	return peerFindings(cfg, h, StallZeroWindow, cfg.ZeroWindowMin)
}
