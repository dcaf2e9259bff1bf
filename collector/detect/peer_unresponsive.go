package detect

// PeerUnresponsive finds remote addresses towards which at least
// PeerMinSockets sockets have their retransmission timer running with at
// least PeerRetransMin consecutive RTO retransmissions (the collector
// counts only those): the peer acknowledges nothing. Warning severity.
func PeerUnresponsive(cfg *Config, h *History) []Finding {
	return peerFindings(cfg, h, StallRetransmit, 0)
}
