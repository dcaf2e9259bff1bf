package main

// eventsBoard is the dashboard of the eBPF event source
// (--collector.events): resets with their reasons and peers, failed
// connects, connection churn and lifetimes, retransmissions.
func eventsBoard() *dashboard {
	d := newDashboard("events", "tcpstate / Connection events",
		"From the exporter's eBPF event source (--collector.events; chart value events.enabled): resets with the kernel's reason and the peers involved, failed connects, connections opened and closed between samples, and retransmissions. Empty where events are off.")
	l := d.layout
	l.row("Resets")
	l.add(12, 9, timeseries("Resets sent by reason", []target{
		rateQ("tcpstate_resets_sent_total", "instance, reason", selNode, "{{instance}} {{reason}}"),
	}, withUnit("cps"), withDescription("The kernel's reason for each reset it sent (Linux 6.10 and later; \"unknown\" before). no_socket: a segment matched no socket (closed port, forgotten connection).")))
	l.add(12, 9, timeseries("Resets received", []target{
		rateQ("tcpstate_resets_received_total", "instance", selNode, "{{instance}}"),
	}, withUnit("cps")))
	l.add(12, 9, table("Peers sending resets (top 10, last 5m)", []target{
		tableQ(sel(`topk(10, sum by (instance, netns, remote_address) (increase(tcpstate_peer_resets_received_total{{SEL}}[$__rate_interval])))`, selNode)),
	}, map[string]string{"Value #A": "resets received"}))
	l.add(12, 9, table("Peers we reset (top 10)", []target{
		tableQ(sel(`topk(10, sum by (instance, netns, remote_address) (increase(tcpstate_peer_resets_sent_total{{SEL}}[$__rate_interval])))`, selNode)),
	}, map[string]string{"Value #A": "resets sent"}))

	l.row("Connects")
	l.add(12, 9, timeseries("Failed connects by reason", []target{
		rateQ("tcpstate_connect_failures_total", "instance, reason", selNode, "{{instance}} {{reason}}"),
	}, withUnit("cps"), withDescription("refused: RST in reply to the SYN; timeout: no SYN-ACK; other: the application gave up first.")))
	l.add(12, 9, table("Destinations with failed connects", []target{
		tableQ(sel(`topk(10, sum by (instance, netns, remote_address, remote_port, reason) (increase(tcpstate_destination_connect_failures_total{{SEL}}[$__rate_interval])))`, selNode)),
	}, map[string]string{"Value #A": "failed connects"}))

	l.row("Churn")
	l.add(12, 9, timeseries("Connections opened and closed", []target{
		rateQ("tcpstate_connections_opened_total", "instance, direction", selNode, "{{instance}} opened {{direction}}"),
		rateQ("tcpstate_connections_closed_total", "instance, direction", selNode, "{{instance}} closed {{direction}}"),
	}, withUnit("cps"), withDescription("Connections established (active: connect, passive: accept) and established connections closed; closed \"unknown\": opened before the events were loaded.")))
	l.add(12, 9, timeseries("Lifetime of closed connections", []target{
		q(sel(`histogram_quantile(0.5, sum by (instance, le) (rate(tcpstate_connection_lifetime_seconds_bucket{{SEL}}[$__rate_interval])))`, selNode), "{{instance}} p50"),
		q(sel(`histogram_quantile(0.99, sum by (instance, le) (rate(tcpstate_connection_lifetime_seconds_bucket{{SEL}}[$__rate_interval])))`, selNode), "{{instance}} p99"),
	}, withUnit("s"), withDescription("From established to closed. Short lifetimes at a high rate are churn that sampling alone misses.")))
	l.add(12, 9, timeseries("Connections opened per listener (top 10)", []target{
		q(sel(`topk(10, sum by (instance, netns, port) (rate(tcpstate_listener_connections_opened_total{{SEL}}[$__rate_interval])))`, selNode), "{{instance}} :{{port}}"),
	}, withUnit("cps")))
	l.add(12, 9, timeseries("Connections opened per destination (top 10)", []target{
		q(sel(`topk(10, sum by (instance, netns, remote_address, remote_port) (rate(tcpstate_destination_connections_opened_total{{SEL}}[$__rate_interval])))`, selNode), "{{instance}} {{remote_address}}:{{remote_port}}"),
	}, withUnit("cps")))
	l.add(12, 9, timeseries("Median lifetime per listener port", []target{
		q(sel(`histogram_quantile(0.5, sum by (instance, netns, port, le) (rate(tcpstate_listener_connection_lifetime_seconds_bucket{{SEL}}[$__rate_interval])))`, selNode), "{{instance}} :{{port}}"),
	}, withUnit("s"), withDescription("Accepted connections, from established to closed, for the listeners with the most closed connections (--collector.events.max-lifetime-series; the rest in port \"other\"). A listener whose lifetimes drop to milliseconds is serving churn: clients without keep-alive, or closing on errors.")))
	l.add(12, 9, timeseries("Median lifetime per destination", []target{
		q(sel(`histogram_quantile(0.5, sum by (instance, netns, remote_address, remote_port, le) (rate(tcpstate_destination_connection_lifetime_seconds_bucket{{SEL}}[$__rate_interval])))`, selNode), "{{instance}} {{remote_address}}:{{remote_port}}"),
	}, withUnit("s"), withDescription("Connections this node opened, from established to closed, for the destinations with the most closed connections (the rest in \"other\"). Short lifetimes at a high rate to one destination fill TIME_WAIT and use up local ports.")))

	l.row("Retransmissions")
	l.add(12, 9, timeseries("Retransmitted segments and SYN-ACKs", []target{
		rateQ("tcpstate_retransmitted_segments_total", "instance", selNode, "{{instance}} segments"),
		rateQ("tcpstate_synack_retransmits_total", "instance", selNode, "{{instance}} SYN-ACKs"),
	}, withUnit("cps")))
	l.add(12, 9, timeseries("Retransmissions per peer (top 10)", []target{
		q(sel(`topk(10, sum by (instance, netns, remote_address) (rate(tcpstate_peer_retransmitted_segments_total{{SEL}}[$__rate_interval])))`, selNode), "{{instance}} {{remote_address}}"),
	}, withUnit("cps")))
	l.add(12, 8, timeseries("Events lost", []target{
		rateQ("tcpstate_events_dropped_total", "instance, map", selNode, "{{instance}} {{map}}"),
	}, withUnit("cps"), withDescription("Events the BPF programs could not count because a map was full: the detail and top-K series miss them (totals, the per-namespace counters, stay exact unless \"totals\" rises).")))
	return d.build()
}
