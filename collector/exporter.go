package collector

import (
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "tcpstate"

// Target is a sampled network namespace and the labels that say where it is.
type Target struct {
	Sampler *Sampler
	// Labels are the values of ExporterOptions.TargetLabels, in order.
	Labels []string
}

// ExporterOptions configure an Exporter.
type ExporterOptions struct {
	// TargetLabels name the labels every per-namespace series carries, for
	// example netns, namespace and pod; empty in host mode.
	TargetLabels []string
	// MaxListeners bounds the listener series per target; the rest fold
	// into one series per family with address and port "other".
	// Zero means 1000.
	MaxListeners int
	// MaxDestinations bounds the destination series per target (most used
	// first, at most StoredDestinations); the rest fold into one series per
	// family with addresses and port "other". Zero means 50.
	MaxDestinations int
	// MaxTargets bounds the targets (network namespaces) reported one by
	// one when TargetLabels is set; see Exporter for how the rest fold into
	// one target labelled OtherTarget. Zero means 500.
	MaxTargets int
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Errors counts the series a scrape could not build (see
	// ScrapeErrors); nil means a ScrapeErrors of the Exporter's own,
	// counted but not exported.
	Errors *ScrapeErrors
	// MaxPeers bounds the stalled-peer series per target (most stalled
	// sockets first); the rest fold into remote address "other". Zero
	// means 20.
	MaxPeers int
	// MaxClients bounds the client series per listener (most connections
	// first); the rest fold into client "other". Zero means 3.
	MaxClients int
	// MaxEventSeries bounds each top-K family of event series (listeners,
	// destinations, peers) per target; the rest fold into "other". Zero
	// means 20.
	MaxEventSeries int
	// MaxLifetimeSeries bounds the lifetime histograms per listener and per
	// destination per target (events_lifetime.go). Zero means 5.
	MaxLifetimeSeries int
}

// OtherTarget is the value of the first target label (netns) of the target
// that folds the namespaces beyond ExporterOptions.MaxTargets; its other
// target labels are empty. HostTarget names the agent's own network
// namespace: its netns label value (netns.Namespace.Label), the name its
// Sampler is scheduled under, and the first label value of the one target
// that is never folded.
const (
	OtherTarget = "other"
	HostTarget  = "host"
)

// Exporter is a prometheus.Collector over the latest samples of a set of
// targets. Collect reads published samples only; it never runs a dump.
//
// When TargetLabels is set and there are more than MaxTargets targets, a
// scrape reports the host target (first label HostTarget) and the largest
// others by total sockets in their latest view, MaxTargets in all, and
// folds the rest into one target labelled OtherTarget. A target reported at
// the previous scrape counts its sockets plus a quarter plus one when
// ranked, so that namespaces of about equal size do not swap places between
// scrapes (only a target that had a full sample when it was kept earns
// this); ties go to the smaller label values. The folded target carries
// the sums of the folded namespaces' tcpstate_sockets and
// tcpstate_sockets_max, of their listeners, destinations and CLOSE_WAIT
// groups as "other" series (address, port and command "other"), of their
// untracked CLOSE_WAIT sockets, and tcpstate_folded_series per kind counting
// every entry that went into those series. Their kernel counters, sysctls,
// read errors and dump self-metrics are left out: a sum over a set of
// namespaces that changes between scrapes would make counters go backwards
// and durations or sysctl values meaningless. tcpstate_folded_series with
// kind="namespaces" on the folded target's labels counts the folded
// namespaces, 0 when none are.
type Exporter struct {
	targets func() []Target
	opts    ExporterOptions

	// kept holds the keys of the targets reported one by one at the latest
	// scrape, for the ranking's hysteresis.
	keptMu sync.Mutex
	kept   map[string]struct{}

	// cache holds, per target key, the series that follow from the
	// target's latest samples alone (see sampleSeries).
	cacheMu sync.Mutex
	cache   map[string]*cachedSeries

	sockets, socketsMax                    *prometheus.Desc
	lQueue, lLimit, lSynRecv, lSockets     *prometheus.Desc
	folded                                 *prometheus.Desc
	dumpDuration, dumpSockets, dumps       *prometheus.Desc
	dumpErrors, dumpCPU, interval, planned *prometheus.Desc
	ehashPrivate, ehashEntries             *prometheus.Desc
	sampleAge, unknown                     *prometheus.Desc
	destUsed, destTW, portsUsable          *prometheus.Desc
	cwSockets, cwOldest, cwUntracked       *prometheus.Desc
	orphans, sysctl, kernelErrors          *prometheus.Desc
	netstat                                []netstatDesc
	ho                                     halfOpenDescs
	// parts maps each Desc to its part of the collection, for
	// tcpstate_scrape_errors_total.
	parts  map[*prometheus.Desc]string
	health healthDescs

	// ev are the eBPF event families (events.go).
	ev eventDescs
}

// NewExporter returns an Exporter reading the targets that targets returns
// at each scrape.
func NewExporter(targets func() []Target, opts ExporterOptions) *Exporter {
	if opts.MaxListeners <= 0 {
		opts.MaxListeners = 1000
	}
	if opts.MaxDestinations <= 0 {
		opts.MaxDestinations = 50
	}
	if opts.MaxTargets <= 0 {
		opts.MaxTargets = 500
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Errors == nil {
		opts.Errors = NewScrapeErrors(slog.New(slog.DiscardHandler))
	}
	if opts.MaxPeers <= 0 {
		opts.MaxPeers = 20
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = 3
	}
	if opts.MaxEventSeries <= 0 {
		opts.MaxEventSeries = 20
	}
	if opts.MaxLifetimeSeries <= 0 {
		opts.MaxLifetimeSeries = 5
	}
	tl := opts.TargetLabels
	with := func(l ...string) []string { return append(slices.Clone(tl), l...) }
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_"+name, help, with(labels...), nil)
	}
	var ns []netstatDesc
	for _, c := range netstatCounters {
		ns = append(ns, netstatDesc{c.field, d("netstat_"+c.name+"_total",
			"Kernel TCP counter "+c.field.Section()+":"+c.field.Name()+" of the namespace (/proc/net/"+map[string]string{"TcpExt": "netstat", "Tcp": "snmp"}[c.field.Section()]+").")})
	}
	dest := []string{"family", "local_address", "remote_address", "remote_port"}
	e := &Exporter{
		ev:           newEventDescs(d),
		netstat:      ns,
		ho:           newHalfOpenDescs(d),
		destUsed:     d("destination_local_ports_used", "Outbound sockets (TIME_WAIT included) holding a local port towards a destination, from the latest full sample.", dest...),
		destTW:       d("destination_time_wait", "Outbound sockets towards a destination that are in TIME_WAIT, from the latest full sample.", dest...),
		portsUsable:  d("local_ports_usable", "Local ports connect() can pick: the size of net.ipv4.ip_local_port_range minus net.ipv4.ip_local_reserved_ports."),
		cwSockets:    d("close_wait_sockets", "CLOSE_WAIT sockets by local port (\"ephemeral\" for outbound ones) and owning command (empty until looked up).", "port", "command"),
		cwOldest:     d("close_wait_oldest_seconds", "Age of the oldest CLOSE_WAIT socket of the group, tracked by socket cookie since the exporter first saw it.", "port", "command"),
		cwUntracked:  d("close_wait_untracked_sockets", "CLOSE_WAIT sockets not tracked by cookie because the tracker is full; they are in no tcpstate_close_wait_sockets group."),
		orphans:      d("orphan_sockets", "Orphaned TCP sockets (sockstat; host-wide)."),
		sysctl:       d("sysctl", "Values of the sysctls the detectors use.", "name"),
		kernelErrors: d("kernel_read_errors_total", "Failed reads of a kernel file (procfs net file, sysctl, or netns when the namespace could not be entered); the values that depend on it are missing.", "file"),
		targets:      targets,
		opts:         opts,
		cache:        map[string]*cachedSeries{},
		sockets:      d("sockets", "TCP sockets per address family and state: rare states from the latest dump, established and time_wait from the latest full dump.", "family", "state"),
		socketsMax:   d("sockets_max", "Maximum of tcpstate_sockets over the trailing sample window (--sample.window).", "family", "state"),
		lQueue:       d("listener_accept_queue_length", "Connections waiting in the accept queue of a listening address, summed over its sockets.", "family", "address", "port"),
		lLimit:       d("listener_accept_queue_limit", "Accept-queue limit of a listening address (listen backlog capped by somaxconn), summed over its sockets.", "family", "address", "port"),
		lSynRecv:     d("listener_syn_recv", "Half-open connections (SYN_RECV request sockets) for a listening address.", "family", "address", "port"),
		lSockets:     d("listener_sockets", "Listening sockets behind an address (more than one with SO_REUSEPORT).", "family", "address", "port"),
		folded:       d("folded_series", "Entries folded into an \"other\" series in the latest sample because a --collector.*.max limit was reached.", "kind"),
		dumpDuration: d("dump_duration_seconds", "Wall time of the latest successful sock_diag dump.", "kind"),
		dumpSockets:  d("dump_sockets", "Sockets returned by the latest successful sock_diag dump.", "kind"),
		dumps:        d("dumps_total", "sock_diag dumps run.", "kind"),
		dumpErrors:   d("dump_errors_total", "sock_diag dumps that failed; their partial results were discarded.", "kind"),
		dumpCPU:      d("dump_cpu_seconds_total", "CPU time (user and system, including the kernel's work for the dump) spent in sock_diag dumps.", "kind"),
		interval:     d("sample_interval_seconds", "Time between the starts of the two latest dumps of a kind.", "kind"),
		planned:      d("sample_interval_planned_seconds", "Interval the CPU-budget schedule currently aims for, per kind of dump.", "kind"),
		sampleAge:    d("sample_age_seconds", "Age of the latest successful sample of a kind at scrape time.", "kind"),
		ehashPrivate: d("netns_private_ehash", "1 when the namespace's established hash table is its own (net.ipv4.tcp_ehash_entries positive: created while net.ipv4.tcp_child_ehash_entries was set, or the initial namespace), 0 when it shares the initial namespace's, so that its dumps walk every sharing namespace's sockets. Absent before Linux 6.1."),
		ehashEntries: d("ehash_entries", "Buckets of the established hash table the namespace's sockets live in (net.ipv4.tcp_ehash_entries, sign removed)."),
		unknown:      d("dump_unknown_sockets", "Sockets in the latest dump with a family or state this exporter does not know (not counted in tcpstate_sockets).", "kind"),
	}
	e.parts = map[*prometheus.Desc]string{
		e.sockets: PartSockets, e.socketsMax: PartSockets,
		e.lQueue: PartListeners, e.lLimit: PartListeners, e.lSynRecv: PartListeners, e.lSockets: PartListeners,
		e.destUsed: PartDestinations, e.destTW: PartDestinations,
		e.cwSockets: PartCloseWait, e.cwOldest: PartCloseWait, e.cwUntracked: PartCloseWait,
		e.portsUsable: PartKernel, e.orphans: PartKernel, e.sysctl: PartKernel, e.kernelErrors: PartKernel,
	}
	for _, n := range e.netstat {
		e.parts[n.desc] = PartKernel
	}
	e.health = newHealthDescs(d, e.folded, opts.MaxPeers, opts.MaxClients)
	e.parts[e.health.synRetrans], e.parts[e.health.clientConns] = PartListeners, PartListeners
	return e
}

// Collect sends the metrics of every target's latest samples, folding the
// targets beyond MaxTargets.
//
// A series that cannot be built (an invalid label value) is left out and
// counted in Errors under its part; the rest are sent.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	pe := partErrors{}
	defer func() {
		for _, p := range exporterParts {
			e.opts.Errors.Record(p, pe[p])
		}
	}()
	now := e.opts.Now()
	ts := e.targets()
	if len(e.opts.TargetLabels) == 0 {
		for _, t := range ts {
			e.collectTarget(ch, pe, t, t.Sampler.View(now), now)
		}
		e.pruneCache(ts, nil)
		return
	}
	views := make([]View, len(ts))
	for i, t := range ts {
		views[i] = t.Sampler.View(now)
	}
	kept, folded := e.selectTargets(ts, views)
	for _, i := range kept {
		e.collectTarget(ch, pe, ts[i], views[i], now)
	}
	e.pruneCache(ts, kept)
	fv := make([]*View, len(folded))
	for j, i := range folded {
		fv[j] = &views[i]
	}
	e.collectOther(ch, pe, fv)
}
