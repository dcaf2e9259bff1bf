package main

// This file defines the dashboards. `go generate ./dashboards` writes them to
// dashboards/*.json.

import "strings"

// sel fills the {SEL} placeholder of a query with a label selector body.
func sel(expr, selector string) string { return strings.ReplaceAll(expr, "{SEL}", selector) }

// rateQ is a per-second rate query summed by the given labels.
func rateQ(counter, by, selector, legend string) target {
	return q("sum by ("+by+") (rate("+counter+"{"+selector+"}[$__rate_interval]))", legend)
}

// allDashboards returns every dashboard keyed by file name.
func allDashboards() map[string]*dashboard {
	return map[string]*dashboard{
		"overview.json":             overview(),
		"listeners.json":            listeners(),
		"leaks-and-exhaustion.json": leaks(),
		"pods.json":                 pods(),
		"alerts.json":               alerts(),
		"events.json":               eventsBoard(),
	}
}

func overview() *dashboard {
	d := newDashboard("overview", "tcpstate / Overview",
		"TCP sockets per state and node from tcpstate-exporter, kernel counters, and the exporter's own cost.")
	l := d.layout
	l.row("Sockets")
	for _, s := range []struct{ title, state string }{
		{"ESTABLISHED", "established"}, {"TIME_WAIT", "time_wait"}, {"CLOSE_WAIT", "close_wait"}, {"SYN_RECV", "syn_recv"},
	} {
		l.add(4, 4, stat(s.title, q(sel(`sum(tcpstate_sockets{state="`+s.state+`", {SEL}})`, selNode), "")))
	}
	l.add(4, 4, stat("Orphans", q(sel(`sum(max by (job, instance) (tcpstate_orphan_sockets{{SEL}}))`, selNode), ""),
		withDescription("Orphaned sockets (closed by the application, still owned by the kernel); a node-wide count.")))
	l.add(4, 4, stat("Agent alerts firing", q(sel(`count(tcpstate_alert{alertstate="firing", {SEL}}) or vector(0)`, selNode), ""),
		withThresholds(steps(1.0, "red"), "")))
	l.add(12, 9, timeseries("Sockets per state", []target{
		q(sel(`sum by (state) (tcpstate_sockets{{SEL}})`, selNode), "{{state}}"),
	}, withDescription("Latest full sample, all selected nodes and namespaces added.")))
	l.add(12, 9, timeseries("Sockets per node and state", []target{
		q(sel(`sum by (instance, state) (tcpstate_sockets{state!="listen", {SEL}})`, selNode), "{{instance}} {{state}}"),
	}))
	l.add(12, 9, timeseries("Peaks of rare states over the sample window", []target{
		q(sel(`sum by (instance, state) (tcpstate_sockets_max{state=~"syn_recv|syn_sent|close_wait|fin_wait1|fin_wait2|last_ack|closing", {SEL}})`, selNode), "{{instance}} {{state}}"),
	}, withDescription("tcpstate_sockets_max: the highest count within --sample.window. Rare states are sampled every interval, so short bursts show here even when full dumps are stretched.")))
	l.add(12, 9, timeseries("Peaks of ESTABLISHED and TIME_WAIT", []target{
		q(sel(`sum by (instance, state) (tcpstate_sockets_max{state=~"established|time_wait", {SEL}})`, selNode), "{{instance}} {{state}} peak"),
		q(sel(`sum by (instance, state) (tcpstate_sockets{state=~"established|time_wait", {SEL}})`, selNode), "{{instance}} {{state}}"),
	}))

	connHealthRow(l)

	l.row("Kernel counters")
	l.add(12, 8, timeseries("Listen queues and SYN handling", []target{
		rateQ("tcpstate_netstat_listen_overflows_total", "instance", selNode, "{{instance}} listen overflows"),
		rateQ("tcpstate_netstat_listen_drops_total", "instance", selNode, "{{instance}} listen drops"),
		rateQ("tcpstate_netstat_syncookies_sent_total", "instance", selNode, "{{instance}} syncookies sent"),
		rateQ("tcpstate_netstat_reqq_full_drop_total", "instance", selNode, "{{instance}} SYNs dropped"),
	}, withUnit("cps")))
	l.add(12, 8, timeseries("Resets and aborts", []target{
		rateQ("tcpstate_netstat_out_rsts_total", "instance", selNode, "{{instance}} RSTs sent"),
		rateQ("tcpstate_netstat_estab_resets_total", "instance", selNode, "{{instance}} established reset"),
		rateQ("tcpstate_netstat_abort_on_timeout_total", "instance", selNode, "{{instance}} aborted on timeout"),
	}, withUnit("cps")))

	l.row("Exporter")
	l.add(8, 8, timeseries("Dump duration", []target{
		q(sel(`tcpstate_dump_duration_seconds{{SEL}}`, selNode), "{{instance}} {{netns}} {{kind}}"),
	}, withUnit("s")))
	l.add(8, 8, timeseries("Dump CPU", []target{
		q(sel(`sum by (instance, kind) (rate(tcpstate_dump_cpu_seconds_total{{SEL}}[$__rate_interval]))`, selNode), "{{instance}} {{kind}}"),
	}, withUnit("percentunit"), withDescription("CPU spent in dumps as a fraction of one core (user + system, kernel work included). --sample.cpu-budget caps it, 5% by default.")))
	l.add(8, 8, timeseries("Sockets per dump", []target{
		q(sel(`tcpstate_dump_sockets{{SEL}}`, selNode), "{{instance}} {{netns}} {{kind}}"),
	}))
	l.add(8, 8, timeseries("Sample interval", []target{
		q(sel(`tcpstate_sample_interval_seconds{{SEL}}`, selNode), "{{instance}} {{netns}} {{kind}}"),
	}, withUnit("s"), withDescription("Interval actually used between dumps; full dumps are stretched to stay within the CPU budget.")))
	l.add(8, 8, timeseries("Sample age at scrape", []target{
		q(sel(`tcpstate_sample_age_seconds{{SEL}}`, selNode), "{{instance}} {{netns}} {{kind}}"),
	}, withUnit("s")))
	l.add(8, 8, timeseries("Dumps and errors", []target{
		rateQ("tcpstate_dumps_total", "instance, kind", selNode, "{{instance}} {{kind}} dumps"),
		rateQ("tcpstate_dump_errors_total", "instance, kind", selNode, "{{instance}} {{kind}} errors"),
	}, withUnit("cps")))
	l.add(8, 8, timeseries("Series folded into \"other\"", []target{
		q("sum by (instance, kind) (tcpstate_folded_series{"+selNode+"})", "{{instance}} {{kind}}"),
	}, withUnit("short"), withDescription("Entries folded into an \"other\" series in the latest sample because a --collector.*.max limit was hit.")))
	l.add(8, 8, table("Build", []target{
		tableQ(sel(`tcpstate_build_info{{SEL}}`, selNode)),
	}, nil, withHiddenColumns("Value")))
	l.add(8, 8, table("Sysctls", []target{
		tableQ(sel(`tcpstate_sysctl{{SEL}}`, selNode)),
	}, map[string]string{"Value": "value"}))
	l.add(16, 8, timeseries("Alertmanager pushes", []target{
		rateQ("tcpstate_alertmanager_notifications_total", "instance, url", selNode, "{{instance}} {{url}} sent"),
		rateQ("tcpstate_alertmanager_notifications_errors_total", "instance, url", selNode, "{{instance}} {{url}} failed"),
		rateQ("tcpstate_alertmanager_notifications_dropped_total", "instance, url", selNode, "{{instance}} {{url}} dropped"),
	}, withUnit("cps"), withDashedRegexp(" (failed|dropped)$"),
		withDescription("Alerts the agent pushed to each Alertmanager (--alertmanager.url) per second, those in failed pushes, and those dropped from a full queue. Failures or drops mean the agent's own alerts do not arrive (TCPStateExporterAlertmanagerErrors). Empty without --alertmanager.url.")))
	l.add(8, 8, timeseries("Namespace sampler", []target{
		q(sel(`tcpstate_netns_namespaces{{SEL}}`, selNode), "{{instance}} namespaces"),
		q(sel(`tcpstate_netns_sweep_period_seconds{{SEL}}`, selNode), "{{instance}} sweep period"),
		q(sel(`tcpstate_netns_unsampled{{SEL}} > 0`, selNode), "{{instance}} not sampled: {{reason}}"),
	}, withUnit("short"), withUnitRegexp(" sweep period$", "s"), withDashedRegexp(" not sampled: "),
		withDescription("With --netns=all: network namespaces sampled, the planned time between two passes over all of them, and namespaces found but not sampled (open_error: could not be opened; fd_limit: the agent is near its open-file limit; TCPStateExporterNamespacesUnsampled). Empty in --netns=host mode.")))
	l.add(8, 8, timeseries("Sampling plan against the interval asked", []target{
		q(sel(`tcpstate_schedule_interval_planned_seconds{{SEL}}`, selNode), "{{instance}} {{kind}} planned"),
		q(sel(`tcpstate_schedule_interval_asked_seconds{{SEL}}`, selNode), "{{instance}} {{kind}} asked"),
	}, withUnit("s"), withDashedRegexp(" asked$"),
		withDescription("Per kind of work (listen: counters and LISTEN-only dumps, the cheap path that detects SYN floods and accept-queue overflows; rare and full dumps), the interval at which every sampled namespace gets its data under --sample.cpu-budget, against --sample.interval. Full dumps stretch by design on big nodes; a stretched listen interval means the budget cannot hold the cheap path for every namespace.")))
	l.add(8, 8, timeseries("Budget exceeded and shared hash tables", []target{
		q(sel(`max by (instance, kind) (tcpstate_sample_budget_exceeded{{SEL}})`, selNode), "{{instance}} {{kind}} over budget"),
		q(sel(`count by (instance) (tcpstate_netns_private_ehash{{SEL}} == 0)`, selNode), "{{instance}} namespaces sharing the hash"),
	}, withUnit("short"),
		withDescription("1 while the CPU budget cannot give every namespace a kind's data at the interval asked (the agent also logs it once); and the namespaces whose dumps walk the node's shared established hash. Setting net.ipv4.tcp_child_ehash_entries on the node gives namespaces created afterwards a private hash, so their dumps walk only their own sockets (README, Pod mode).")))
	return d.build()
}

func listeners() *dashboard {
	d := newDashboard("listeners", "tcpstate / Listeners",
		"Accept queues and SYN queues per listening address, syncookies and overflows.")
	l := d.layout
	l.row("Listeners at risk")
	l.add(24, 9, table("Listeners by accept-queue fill", []target{
		tableQ(sel(`sort_desc(listener:tcpstate_listener_accept_queue_fill:ratio{{SEL}})`, selNode)),
		tableQ(sel(`tcpstate_listener_accept_queue_length{{SEL}}`, selNode)),
		tableQ(sel(`tcpstate_listener_accept_queue_limit{{SEL}}`, selNode)),
		tableQ(sel(`tcpstate_listener_syn_recv{{SEL}}`, selNode)),
		tableQ(sel(`tcpstate_listener_sockets{{SEL}}`, selNode)),
	}, map[string]string{"Value #A": "accept queue fill", "Value #B": "accept queue", "Value #C": "limit", "Value #D": "SYN_RECV", "Value #E": "sockets"},
		withColumnUnit("accept queue fill", "percentunit"),
		func(p *panel) {
			p.Options["sortBy"] = []any{map[string]any{"desc": true, "displayName": "accept queue fill"}}
		}))

	l.row("Accept queue")
	l.add(12, 9, timeseries("Accept queue length and limit", []target{
		q(sel(`tcpstate_listener_accept_queue_length{{SEL}} > 0`, selNode), "{{instance}} {{address}}:{{port}}"),
		q(sel(`tcpstate_listener_accept_queue_limit{{SEL}} and tcpstate_listener_accept_queue_length{{SEL}} > 0`, selNode), "{{instance}} {{address}}:{{port}} limit"),
	}, withDashedRegexp(".* limit$"), withDescription("Listeners with connections waiting for accept(); the dashed line is the queue limit (backlog capped by somaxconn).")))
	l.add(12, 9, timeseries("Accept queue fill (top 20)", []target{
		q(sel(`topk(20, listener:tcpstate_listener_accept_queue_fill:ratio{{SEL}})`, selNode), "{{instance}} {{address}}:{{port}}"),
	}, withUnit("percentunit"), withThresholds(steps(0.9, "red"), "line")))
	l.add(12, 8, timeseries("Listen overflows and drops", []target{
		rateQ("tcpstate_netstat_listen_overflows_total", "instance, netns", selNode, "{{instance}} {{netns}} overflows"),
		rateQ("tcpstate_netstat_listen_drops_total", "instance, netns", selNode, "{{instance}} {{netns}} drops"),
	}, withUnit("cps")))
	l.add(12, 8, timeseries("Listening sockets per address", []target{
		q(sel(`tcpstate_listener_sockets{{SEL}}`, selNode), "{{instance}} {{address}}:{{port}}"),
	}, withDescription("More than one means SO_REUSEPORT; the queue metrics add up all of them.")))

	l.row("SYN queue")
	l.add(12, 9, timeseries("SYN_RECV per listener", []target{
		q(sel(`tcpstate_listener_syn_recv{{SEL}} > 0`, selNode), "{{instance}} {{address}}:{{port}}"),
	}))
	l.add(12, 9, timeseries("SYN_RECV against the backlog (top 20)", []target{
		q(sel(`topk(20, listener:tcpstate_listener_syn_recv_fill:ratio{{SEL}})`, selNode), "{{instance}} {{address}}:{{port}}"),
	}, withUnit("percentunit"), withThresholds(steps(0.9, "red"), "line"),
		withDescription("Once half-open connections reach the backlog the kernel answers with syncookies, or drops SYNs if syncookies are off.")))
	l.add(12, 8, timeseries("Syncookies", []target{
		rateQ("tcpstate_netstat_syncookies_sent_total", "instance, netns", selNode, "{{instance}} {{netns}} sent"),
		rateQ("tcpstate_netstat_syncookies_recv_total", "instance, netns", selNode, "{{instance}} {{netns}} valid returned"),
		rateQ("tcpstate_netstat_syncookies_failed_total", "instance, netns", selNode, "{{instance}} {{netns}} invalid"),
	}, withUnit("cps")))
	l.add(12, 8, timeseries("SYN queue full", []target{
		rateQ("tcpstate_netstat_reqq_full_do_cookies_total", "instance, netns", selNode, "{{instance}} {{netns}} answered with cookies"),
		rateQ("tcpstate_netstat_reqq_full_drop_total", "instance, netns", selNode, "{{instance}} {{netns}} dropped"),
	}, withUnit("cps")))
	clientsRow(l)
	return d.build()
}

func leaks() *dashboard {
	d := newDashboard("leaks-and-exhaustion", "tcpstate / Leaks and exhaustion",
		"CLOSE_WAIT leaks, half-open suspects, ephemeral port use per destination, TIME_WAIT and orphan limits, resets.")
	l := d.layout
	l.row("CLOSE_WAIT")
	l.add(12, 9, timeseries("CLOSE_WAIT by port and command", []target{
		q(sel(`tcpstate_close_wait_sockets{{SEL}}`, selNode), "{{instance}} {{command}} :{{port}}"),
	}))
	l.add(12, 9, timeseries("Oldest CLOSE_WAIT socket", []target{
		q(sel(`tcpstate_close_wait_oldest_seconds{{SEL}}`, selNode), "{{instance}} {{command}} :{{port}}"),
	}, withUnit("s"), withThresholds(steps(600.0, "red"), "line"),
		withDescription("The kernel never times out CLOSE_WAIT: an age that only grows means the application never closes these sockets.")))
	l.add(16, 8, table("CLOSE_WAIT groups", []target{
		tableQ(sel(`sort_desc(tcpstate_close_wait_sockets{{SEL}})`, selNode)),
		tableQ(sel(`tcpstate_close_wait_oldest_seconds{{SEL}}`, selNode)),
	}, map[string]string{"Value #A": "sockets", "Value #B": "oldest"}, withColumnUnit("oldest", "s")))
	l.add(8, 8, timeseries("CLOSE_WAIT per node", []target{
		q(sel(`sum by (instance) (tcpstate_sockets{state="close_wait", {SEL}})`, selNode), "{{instance}}"),
	}))

	l.row("Half-open suspects")
	l.add(12, 9, timeseries("Half-open suspects by port and command", []target{
		q(sel(`tcpstate_halfopen_suspects{{SEL}}`, selNode), "{{instance}} {{command}} :{{port}}"),
	}, withDescription("ESTABLISHED connections with no timer armed (no keepalive, nothing in flight) that received nothing for longer than --halfopen.min-idle, from the latest half-open sweep. Peers that vanished without FIN or RST leave them open for ever (TCPHalfOpenSuspect).")))
	l.add(12, 9, timeseries("Longest silence of a half-open suspect", []target{
		q(sel(`tcpstate_halfopen_oldest_idle_seconds{{SEL}}`, selNode), "{{instance}} {{command}} :{{port}}"),
	}, withUnit("s"), withDescription("Time since the group's most silent connection received anything (tcpi_last_data_recv, tcpi_last_ack_recv). A time that only grows: the peer is gone.")))
	l.add(8, 8, table("Half-open groups", []target{
		tableQ(sel(`sort_desc(tcpstate_halfopen_suspects{{SEL}})`, selNode)),
		tableQ(sel(`tcpstate_halfopen_oldest_idle_seconds{{SEL}}`, selNode)),
	}, map[string]string{"Value #A": "connections", "Value #B": "longest idle"}, withColumnUnit("longest idle", "s")))
	l.add(8, 8, timeseries("Half-open sweep: share of the CPU budget", []target{
		q(sel(`tcpstate_halfopen_sweep_budget_share{{SEL}}`, selNode), "{{instance}} {{netns}}"),
	}, withUnit("percentunit"), withThresholds(steps(0.25, "orange"), "line"),
		withDescription("The sweep asks for INET_DIAG_INFO (about 1.35x to 1.6x a full dump's CPU, BENCHMARKS.md) and is spaced to take at most a quarter of --sample.cpu-budget.")))
	l.add(8, 8, timeseries("Half-open sweep interval", []target{
		q(sel(`tcpstate_sample_interval_seconds{kind="halfopen", {SEL}}`, selNode), "{{instance}} {{netns}} actual"),
		q(sel(`tcpstate_sample_interval_planned_seconds{kind="halfopen", {SEL}}`, selNode), "{{instance}} {{netns}} planned"),
	}, withUnit("s"), withDashedRegexp(".* planned$"),
		withDescription("Time between half-open sweeps: at least --halfopen.interval, longer when the CPU budget requires.")))

	l.row("Local ports per destination")
	l.add(12, 9, timeseries("Local port use per destination (top 20)", []target{
		q(sel(`topk(20, destination:tcpstate_local_ports_used:ratio{{SEL}})`, selNode), "{{instance}} {{local_address}} -> {{remote_address}}:{{remote_port}}"),
	}, withUnit("percentunit"), withThresholds(steps(0.8, "orange", 0.95, "red"), "line"),
		withDescription("Outbound sockets (TIME_WAIT included) holding a local port towards one (local address, remote address, remote port), against the usable ip_local_port_range.")))
	l.add(12, 9, timeseries("Local ports used against usable", []target{
		q(sel(`topk(20, tcpstate_destination_local_ports_used{{SEL}})`, selNode), "{{instance}} {{local_address}} -> {{remote_address}}:{{remote_port}}"),
		q(sel(`max by (instance) (tcpstate_local_ports_usable{{SEL}})`, selNode), "{{instance}} usable"),
	}, withDashedRegexp(".* usable$")))
	l.add(24, 8, timeseries("Local port use a minute ahead (top 20)", []target{
		q(sel(`topk(20, predict_linear(destination:tcpstate_local_ports_used:ratio{{SEL}}[2m], 60))`, selNode), "{{instance}} {{local_address}} -> {{remote_address}}:{{remote_port}}"),
	}, withUnit("percentunit"), withThresholds(steps(1.0, "red"), "line"),
		withDescription("Port use towards each destination a minute from now at the rate of the last 2 minutes. A TIME_WAIT socket holds its port for 60 s, so churn that reaches 100% here exhausts the range before the first ports are freed (TCPTimeWaitExhaustion, reason local_ports_forecast).")))
	l.add(12, 8, timeseries("TIME_WAIT per destination (top 20)", []target{
		q(sel(`topk(20, tcpstate_destination_time_wait{{SEL}})`, selNode), "{{instance}} {{local_address}} -> {{remote_address}}:{{remote_port}}"),
	}))
	l.add(12, 8, table("Destinations", []target{
		tableQ(sel(`sort_desc(destination:tcpstate_local_ports_used:ratio{{SEL}})`, selNode)),
		tableQ(sel(`tcpstate_destination_local_ports_used{{SEL}}`, selNode)),
		tableQ(sel(`tcpstate_destination_time_wait{{SEL}}`, selNode)),
	}, map[string]string{"Value #A": "port use", "Value #B": "ports used", "Value #C": "in TIME_WAIT"}, withColumnUnit("port use", "percentunit")))

	l.row("TIME_WAIT")
	l.add(8, 8, timeseries("TIME_WAIT against tcp_max_tw_buckets", []target{
		q(sel(`sum by (instance, netns) (tcpstate_sockets{state="time_wait", {SEL}})`, selNode), "{{instance}} {{netns}} TIME_WAIT"),
		q(sel(`tcpstate_sysctl{name="net.ipv4.tcp_max_tw_buckets", {SEL}}`, selNode), "{{instance}} {{netns}} tcp_max_tw_buckets"),
	}, withDashedRegexp(".*tcp_max_tw_buckets$")))
	l.add(8, 8, timeseries("TIME_WAIT bucket use", []target{
		q(sel(`netns:tcpstate_time_wait_buckets_used:ratio{{SEL}}`, selNode), "{{instance}} {{netns}}"),
	}, withUnit("percentunit"), withThresholds(steps(0.9, "red"), "line")))
	l.add(8, 8, timeseries("TIME_WAIT overflows", []target{
		rateQ("tcpstate_netstat_time_wait_overflow_total", "instance, netns", selNode, "{{instance}} {{netns}}"),
	}, withUnit("cps"), withDescription("Connections closed without TIME_WAIT because tcp_max_tw_buckets was reached.")))

	l.row("Orphans and resets")
	l.add(12, 8, timeseries("Orphans against tcp_max_orphans", []target{
		q(sel(`max by (instance) (tcpstate_orphan_sockets{{SEL}})`, selNode), "{{instance}} orphans"),
		q(sel(`max by (instance) (tcpstate_sysctl{name="net.ipv4.tcp_max_orphans", {SEL}})`, selNode), "{{instance}} tcp_max_orphans"),
	}, withDashedRegexp(".*tcp_max_orphans$")))
	l.add(12, 8, timeseries("Resets and aborts", []target{
		rateQ("tcpstate_netstat_out_rsts_total", "instance", selNode, "{{instance}} RSTs sent"),
		rateQ("tcpstate_netstat_estab_resets_total", "instance", selNode, "{{instance}} established reset"),
		rateQ("tcpstate_netstat_abort_on_timeout_total", "instance", selNode, "{{instance}} abort on timeout"),
		rateQ("tcpstate_netstat_abort_on_data_total", "instance", selNode, "{{instance}} abort on data"),
		rateQ("tcpstate_netstat_abort_on_close_total", "instance", selNode, "{{instance}} abort on close"),
	}, withUnit("cps")))
	return d.build()
}

func pods() *dashboard {
	d := newDashboard("pods", "tcpstate / Pods",
		"Per-namespace and per-pod TCP state when the exporter runs with --netns=all.")
	d.extraVars = []variable{
		queryVariable("namespace", "Namespace", `label_values(tcpstate_sockets{job=~"$job", instance=~"$instance"}, namespace)`, ".*"),
		queryVariable("pod", "Pod", `label_values(tcpstate_sockets{job=~"$job", instance=~"$instance", namespace=~"$namespace"}, pod)`, ".*"),
	}
	l := d.layout
	const legend = "{{namespace}}/{{pod}} {{netns}}"
	l.row("States per pod")
	for _, s := range []struct{ title, state string }{
		{"ESTABLISHED per pod", "established"}, {"TIME_WAIT per pod", "time_wait"},
		{"CLOSE_WAIT per pod", "close_wait"}, {"SYN_RECV per pod", "syn_recv"},
	} {
		l.add(12, 8, timeseries(s.title, []target{
			q(sel(`sum by (instance, netns, namespace, pod) (tcpstate_sockets{state="`+s.state+`", {SEL}})`, selPod), legend),
		}))
	}
	l.add(24, 8, table("Sockets per pod and state", []target{
		tableQ(sel(`sum by (namespace, pod, netns, state) (tcpstate_sockets{{SEL}}) > 0`, selPod)),
	}, map[string]string{"Value": "sockets"}))

	l.row("Listeners, destinations and leaks")
	l.add(12, 8, timeseries("Accept queue fill per listener", []target{
		q(sel(`listener:tcpstate_listener_accept_queue_fill:ratio{{SEL}}`, selPod), "{{namespace}}/{{pod}} {{address}}:{{port}}"),
	}, withUnit("percentunit"), withThresholds(steps(0.9, "red"), "line")))
	l.add(12, 8, timeseries("SYN_RECV per listener", []target{
		q(sel(`tcpstate_listener_syn_recv{{SEL}} > 0`, selPod), "{{namespace}}/{{pod}} {{address}}:{{port}}"),
	}))
	l.add(12, 8, timeseries("Local port use per destination", []target{
		q(sel(`destination:tcpstate_local_ports_used:ratio{{SEL}}`, selPod), "{{namespace}}/{{pod}} -> {{remote_address}}:{{remote_port}}"),
	}, withUnit("percentunit"), withThresholds(steps(0.8, "orange", 0.95, "red"), "line")))
	l.add(12, 8, timeseries("CLOSE_WAIT by command and port", []target{
		q(sel(`tcpstate_close_wait_sockets{{SEL}}`, selPod), "{{namespace}}/{{pod}} {{command}} :{{port}}"),
	}))

	l.row("Kernel counters per pod")
	l.add(8, 8, timeseries("Resets sent", []target{
		rateQ("tcpstate_netstat_out_rsts_total", "netns, namespace, pod", selPod, legend),
	}, withUnit("cps")))
	l.add(8, 8, timeseries("Listen overflows", []target{
		rateQ("tcpstate_netstat_listen_overflows_total", "netns, namespace, pod", selPod, legend),
	}, withUnit("cps")))
	l.add(8, 8, timeseries("Syncookies sent", []target{
		rateQ("tcpstate_netstat_syncookies_sent_total", "netns, namespace, pod", selPod, legend),
	}, withUnit("cps")))
	return d.build()
}

func alerts() *dashboard {
	d := newDashboard("alerts", "tcpstate / Alerts",
		"Alerts raised by the exporter's own detectors (tcpstate_alert) next to the Prometheus rules of rules/tcpstate.rules.yml (ALERTS).")
	l := d.layout
	l.row("Summary")
	l.add(6, 4, stat("Agent alerts firing", q(sel(`count(tcpstate_alert{alertstate="firing", {SEL}}) or vector(0)`, selNode), ""),
		withThresholds(steps(1.0, "red"), "")))
	l.add(6, 4, stat("Agent alerts pending", q(sel(`count(tcpstate_alert{alertstate="pending", {SEL}}) or vector(0)`, selNode), ""),
		withThresholds(steps(1.0, "yellow"), "")))
	l.add(6, 4, stat("Agent critical alerts", q(sel(`count(tcpstate_alert{alertstate="firing", severity="critical", {SEL}}) or vector(0)`, selNode), ""),
		withThresholds(steps(1.0, "red"), "")))
	l.add(6, 4, stat("Rule alerts firing", q(sel(`count(ALERTS{alertname=~"TCP.+", alertstate="firing", {SEL}}) or vector(0)`, selNode), ""),
		withThresholds(steps(1.0, "red"), "")))

	l.row("Exporter detectors (tcpstate_alert)")
	l.add(24, 8, table("Active agent alerts", []target{
		tableQ(sel(`tcpstate_alert{{SEL}}`, selNode)),
	}, nil, withHiddenColumns("Value")))
	l.add(24, 9, stateTimeline("Agent alerts over time", []target{
		q(sel(`max by (instance, alertname) (2 * tcpstate_alert{alertstate="firing", {SEL}} or tcpstate_alert{alertstate="pending", {SEL}})`, selNode), "{{instance}} {{alertname}}"),
	}))

	l.row("Prometheus rules (ALERTS)")
	l.add(24, 8, table("Active rule alerts", []target{
		tableQ(sel(`ALERTS{alertname=~"TCP.+", {SEL}}`, selNode)),
	}, nil, withHiddenColumns("Value")))
	l.add(24, 9, stateTimeline("Rule alerts over time", []target{
		q(sel(`max by (instance, alertname, severity) (2 * ALERTS{alertname=~"TCP.+", alertstate="firing", {SEL}} or ALERTS{alertname=~"TCP.+", alertstate="pending", {SEL}})`, selNode), "{{instance}} {{alertname}} {{severity}}"),
	}))
	return d.build()
}
