package detect

// AcceptQueueFill returns the listener's accept-queue length relative to
// its limit. A limit of 0 counts as 1: the kernel calls a queue full only
// past its limit, so a listener with backlog 0 still holds a connection.
// TCPAcceptQueueOverflow fires on it (Config.AcceptQueueRatio), and the
// snapshot ranks listeners at risk by it.
func (l *Listener) AcceptQueueFill() float64 {
	return float64(l.QueueLen) / float64(max(l.QueueLimit, 1))
}

// AtRisk reports whether the listener's accept queue is at least half full
// or it holds half-open connections (SYN_RECV): the listeners the snapshot
// lists, a wider set than the detectors fire on.
func (l *Listener) AtRisk() bool {
	return l.SynRecv > 0 || (l.QueueLen > 0 && 2*l.QueueLen >= l.QueueLimit)
}
