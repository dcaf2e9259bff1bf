package main

// Connection-health panels: stalled peers, self-connected sockets, clients
// per listener and retransmitted handshakes.

// connHealthRow adds the overview's "Connection health" row.
func connHealthRow(l *layout) {
	l.row("Connection health")
	l.add(12, 9, timeseries("Stalled sockets per peer (top 20)", []target{
		q(sel(`topk(20, tcpstate_peer_stalled_sockets{stall="retransmit", {SEL}})`, selNode), "{{instance}} {{remote_address}} unresponsive"),
		q(sel(`topk(20, tcpstate_peer_stalled_sockets{stall="zero_window", {SEL}})`, selNode), "{{instance}} {{remote_address}} zero window"),
	}, withDashedRegexp(".* zero window$"),
		withDescription("Sockets towards a remote address whose retransmission timer runs with at least --detect.peer.retransmits consecutive retransmissions (the peer acknowledges nothing: TCPPeerUnresponsive), and, dashed, sockets probing a zero window (the peer does not read: TCPPeerZeroWindow). From full samples.")))
	l.add(12, 9, timeseries("How long peers have been stalled", []target{
		q(sel(`topk(20, tcpstate_peer_stalled_seconds{remote_address!="other", {SEL}})`, selNode), "{{instance}} {{remote_address}} {{stall}}"),
		q(sel(`topk(20, tcpstate_peer_stalled_max_retransmissions{stall="retransmit", remote_address!="other", {SEL}})`, selNode), "{{instance}} {{remote_address}} retransmissions"),
	}, withUnit("s"), withUnitRegexp(" retransmissions$", "short"),
		withDescription("Time the exporter has seen each peer stalled over consecutive full samples, and the highest consecutive RTO retransmission count of its sockets (n retransmissions mean at least (2^n-1) x 200 ms without an ACK).")))
	l.add(12, 8, stat("Self-connected sockets", q(sel(`sum(tcpstate_self_connected_sockets{{SEL}}) or vector(0)`, selNode), ""),
		withThresholds(steps(1.0, "red"), ""),
		withDescription("Sockets connected to themselves (same address and port at both ends): a client's connect() retry loop took the port a server should listen on (TCPSelfConnect).")))
	l.add(12, 8, timeseries("Self-connected sockets per node", []target{
		q(sel(`sum by (instance, netns) (tcpstate_self_connected_sockets{{SEL}}) > 0`, selNode), "{{instance}} {{netns}}"),
	}))
}

// clientsRow adds the listeners dashboard's "Clients and handshakes" row.
func clientsRow(l *layout) {
	l.row("Clients and handshakes")
	l.add(12, 9, timeseries("Biggest clients per listener (top 20)", []target{
		q(sel(`topk(20, tcpstate_listener_client_connections{client!="other", {SEL}})`, selNode), "{{instance}} {{client}} -> {{address}}:{{port}}"),
	}, withDescription("Live connections (ESTABLISHED and SYN_RECV) of one client address to one listener: the --collector.clients.max largest clients of the 50 busiest listeners per namespace.")))
	l.add(12, 9, timeseries("Share of a listener held by one client (top 20)", []target{
		q(sel(`topk(20, listener_client:tcpstate_listener_client_connections:share{client!="other", {SEL}})`, selNode), "{{instance}} {{client}} -> {{address}}:{{port}}"),
	}, withUnit("percentunit"), withThresholds(steps(0.5, "red"), "line"),
		withDescription("TCPClientConnectionHog fires at 100 connections and half of the listener's (--detect.client-hog.*).")))
	l.add(12, 8, table("Clients", []target{
		tableQ(sel(`sort_desc(tcpstate_listener_client_connections{{SEL}})`, selNode)),
		tableQ(sel(`listener_client:tcpstate_listener_client_connections:share{{SEL}}`, selNode)),
	}, map[string]string{"Value #A": "connections", "Value #B": "share"}, withColumnUnit("share", "percentunit")))
	l.add(12, 8, timeseries("Half-open connections with SYN-ACK retransmitted", []target{
		q(sel(`tcpstate_listener_syn_recv_retransmitted{{SEL}} > 0`, selNode), "{{instance}} {{address}}:{{port}} retransmitted"),
		q(sel(`tcpstate_listener_syn_recv{{SEL}} and tcpstate_listener_syn_recv_retransmitted{{SEL}} > 0`, selNode), "{{instance}} {{address}}:{{port}} SYN_RECV"),
	}, withDashedRegexp(".* SYN_RECV$"),
		withDescription("Request sockets whose SYN-ACK went unanswered at least once (the kernel retransmits it after 1 s): spoofed sources never answer, and a firewall eating the final ACK looks the same at a low rate.")))
}
