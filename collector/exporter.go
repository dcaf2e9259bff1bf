package collector

import (
	"cmp"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
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
// target labels are empty. HostTarget is the first label value of a target
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

// netstatDesc is one kernel counter exported as tcpstate_netstat_<name>_total.
type netstatDesc struct {
	field procnet.Field
	desc  *prometheus.Desc
}

// netstatCounters are the exported kernel counters and their metric names.
var netstatCounters = []struct {
	field procnet.Field
	name  string
}{
	{procnet.FieldListenOverflows, "listen_overflows"},
	{procnet.FieldListenDrops, "listen_drops"},
	{procnet.FieldSyncookiesSent, "syncookies_sent"},
	{procnet.FieldSyncookiesRecv, "syncookies_recv"},
	{procnet.FieldSyncookiesFailed, "syncookies_failed"},
	{procnet.FieldTCPReqQFullDoCookies, "reqq_full_do_cookies"},
	{procnet.FieldTCPReqQFullDrop, "reqq_full_drop"},
	{procnet.FieldTCPTimeWaitOverflow, "time_wait_overflow"},
	{procnet.FieldTCPAbortOnTimeout, "abort_on_timeout"},
	{procnet.FieldTCPAbortOnData, "abort_on_data"},
	{procnet.FieldTCPAbortOnClose, "abort_on_close"},
	{procnet.FieldOutRsts, "out_rsts"},
	{procnet.FieldEstabResets, "estab_resets"},
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

// exporterParts are the parts of tcpstate_scrape_errors_total an
// Exporter reports.
var exporterParts = []string{PartSockets, PartListeners, PartDestinations, PartCloseWait, PartKernel, PartSampler, PartEvents}

// metric builds one const metric of d, recording a failure (an invalid
// label value) in pe under d's part instead of panicking: the series is
// left out and the collection goes on.
func (e *Exporter) metric(pe partErrors, d *prometheus.Desc, t prometheus.ValueType, val float64, lv []string) (prometheus.Metric, bool) {
	m, err := prometheus.NewConstMetric(d, t, val, lv...)
	if err != nil {
		part, ok := e.parts[d]
		if !ok {
			part = PartSampler
		}
		pe.add(part, err)
		return nil, false
	}
	return m, true
}

// safeLabels returns the target's label values through SafeLabel (pod and
// namespace names come from the Kubernetes API), followed by l.
func safeLabels(target []string, l ...string) []string {
	out := make([]string, 0, len(target)+len(l))
	for _, v := range target {
		out = append(out, SafeLabel(v))
	}
	return append(out, l...)
}

// Describe sends every Desc.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{e.sockets, e.socketsMax, e.lQueue, e.lLimit, e.lSynRecv, e.lSockets,
		e.folded, e.dumpDuration, e.dumpSockets, e.dumps, e.dumpErrors, e.dumpCPU, e.interval, e.planned, e.sampleAge, e.unknown, e.ehashPrivate, e.ehashEntries,
		e.destUsed, e.destTW, e.portsUsable, e.cwSockets, e.cwOldest, e.cwUntracked, e.orphans, e.sysctl, e.kernelErrors} {
		ch <- d
	}
	for _, n := range e.netstat {
		ch <- n.desc
	}
	e.health.describe(ch)
	e.ev.describe(ch)
	e.ho.describe(ch)
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

// cachedSeries are the series built from one pair of samples. Samples are
// immutable once published, and const metrics too, so the entry serves
// every scrape until the target publishes a new sample.
type cachedSeries struct {
	latest, full *Sample
	series       []prometheus.Metric
	// errs are the series the build left out, reported again at every
	// scrape that serves the entry.
	errs partErrors
	// keptListeners are the listeners reported one by one when some were
	// folded (nil otherwise), for the next fold's ranking.
	keptListeners map[ListenerKey]struct{}
}

// sampleSeries returns the series of a target that depend only on its
// latest samples (kernel values, CLOSE_WAIT groups, listeners and
// destinations), built once per new sample rather than on every scrape.
func (e *Exporter) sampleSeries(t Target, v *View) ([]prometheus.Metric, partErrors) {
	key := targetKey(t)
	e.cacheMu.Lock()
	c := e.cache[key]
	e.cacheMu.Unlock()
	if c != nil && c.latest == v.Latest && c.full == v.Full {
		return c.series, c.errs
	}
	var prev map[ListenerKey]struct{}
	if c != nil {
		prev = c.keptListeners
	}
	c = &cachedSeries{latest: v.Latest, full: v.Full, errs: partErrors{}}
	c.series, c.keptListeners = e.buildSampleSeries(c.errs, t.Labels, v, prev)
	e.cacheMu.Lock()
	e.cache[key] = c
	e.cacheMu.Unlock()
	return c.series, c.errs
}

// pruneCache drops the cached series of targets not reported one by one
// at this scrape (all of ts when kept is nil).
func (e *Exporter) pruneCache(ts []Target, kept []int) {
	live := make(map[string]struct{}, len(ts))
	if kept == nil {
		for _, t := range ts {
			live[targetKey(t)] = struct{}{}
		}
	} else {
		for _, i := range kept {
			live[targetKey(ts[i])] = struct{}{}
		}
	}
	e.cacheMu.Lock()
	defer e.cacheMu.Unlock()
	for k := range e.cache {
		if _, ok := live[k]; !ok {
			delete(e.cache, k)
		}
	}
}

// targetKey identifies a target across scrapes by its label values.
func targetKey(t Target) string { return strings.Join(t.Labels, "\x00") }

// selectTargets splits the targets into those reported one by one and those
// folded (indexes into ts, in the order of ts), as the Exporter's
// documentation describes, and remembers the kept ones for the next scrape.
func (e *Exporter) selectTargets(ts []Target, views []View) (kept, folded []int) {
	type cand struct {
		i      int
		key    string
		pinned bool
		score  uint64
	}
	e.keptMu.Lock()
	prev := e.kept
	e.keptMu.Unlock()
	cs := make([]cand, len(ts))
	for i, t := range ts {
		c := cand{i: i, key: targetKey(t), pinned: len(t.Labels) > 0 && t.Labels[0] == HostTarget}
		if views[i].Ready {
			c.score = views[i].Counts.Total()
		}
		if _, ok := prev[c.key]; ok {
			c.score += c.score/4 + 1
		}
		cs[i] = c
	}
	if len(cs) > e.opts.MaxTargets {
		slices.SortFunc(cs, func(x, y cand) int {
			if x.pinned != y.pinned {
				if x.pinned {
					return -1
				}
				return 1
			}
			if c := cmp.Compare(y.score, x.score); c != 0 {
				return c
			}
			if c := cmp.Compare(x.key, y.key); c != 0 {
				return c
			}
			return cmp.Compare(x.i, y.i)
		})
		for _, c := range cs[e.opts.MaxTargets:] {
			folded = append(folded, c.i)
		}
		cs = cs[:e.opts.MaxTargets]
		slices.SortFunc(cs, func(x, y cand) int { return cmp.Compare(x.i, y.i) })
		slices.Sort(folded)
	}
	next := make(map[string]struct{}, len(cs))
	for _, c := range cs {
		kept = append(kept, c.i)
		// Only a ranking on sockets counts: a target kept while nothing
		// was sampled yet earns no preference.
		if views[c.i].Ready {
			next[c.key] = struct{}{}
		}
	}
	e.keptMu.Lock()
	e.kept = next
	e.keptMu.Unlock()
	return kept, folded
}

// collectOther sends the folded target's series: the sums of the folded
// views, as the Exporter's documentation describes.
func (e *Exporter) collectOther(ch chan<- prometheus.Metric, pe partErrors, views []*View) {
	labels := make([]string, len(e.opts.TargetLabels))
	labels[0] = OtherTarget
	lv := func(l ...string) []string { return append(slices.Clone(labels), l...) }
	gauge := func(d *prometheus.Desc, val float64, l ...string) {
		if m, ok := e.metric(pe, d, prometheus.GaugeValue, val, lv(l...)); ok {
			ch <- m
		}
	}
	gauge(e.folded, float64(len(views)), "namespaces")
	if len(views) == 0 {
		return
	}

	var (
		anyLatest, anyReady bool
		counts, maxima      Counts
		untracked           uint64
		cw                  = detect.CloseWaitGroup{Port: "other", Command: "other"}
		cwGroups            int
		lsums               familySums[Listener]
		dests               familySums[detect.Destination]
		nListeners, nDests  int
	)
	for _, v := range views {
		if smp := v.Latest; smp != nil {
			anyLatest = true
			untracked += smp.CloseWaitUntracked
			n := len(smp.CloseWait)
			if smp.CloseWaitFolded > 0 {
				n += smp.CloseWaitFolded - 1 // the sample's own "other" group
			}
			cwGroups += n
			for _, g := range smp.CloseWait {
				cw.Count += g.Count
				cw.Oldest = max(cw.Oldest, g.Oldest)
			}
		}
		if !v.Ready {
			continue
		}
		anyReady = true
		for f := range counts {
			for st := range counts[f] {
				counts[f][st] += v.Counts[f][st]
				maxima[f][st] += v.Max[f][st]
			}
		}
		for _, l := range v.Listeners {
			addListener(lsums.of(l.Family), l)
		}
		nListeners += len(v.Listeners)
		if smp := v.Full; smp != nil {
			for _, d := range smp.Destinations {
				addDestination(dests.of(d.Family), d)
			}
			for _, d := range smp.DestinationsOther {
				addDestination(dests.of(d.Family), d)
			}
			nDests += len(smp.Destinations) + smp.DestinationsFolded
		}
	}
	if anyLatest {
		if cwGroups > 0 {
			gauge(e.cwSockets, float64(cw.Count), cw.Port, cw.Command)
			gauge(e.cwOldest, cw.Oldest.Seconds(), cw.Port, cw.Command)
		}
		gauge(e.cwUntracked, float64(untracked))
		gauge(e.folded, float64(cwGroups), "closewait")
	}
	if !anyReady {
		return
	}
	for _, f := range Families {
		fn := f.String()
		for _, st := range States {
			gauge(e.sockets, float64(counts.Get(f, st)), fn, st.String())
			gauge(e.socketsMax, float64(maxima.Get(f, st)), fn, st.String())
		}
	}
	for _, l := range lsums.list() {
		fn := l.Family.String()
		gauge(e.lQueue, float64(l.QueueLen), fn, "other", "other")
		gauge(e.lLimit, float64(l.QueueLimit), fn, "other", "other")
		gauge(e.lSynRecv, float64(l.SynRecv), fn, "other", "other")
		gauge(e.lSockets, float64(l.Sockets), fn, "other", "other")
		gauge(e.health.synRetrans, float64(l.SynRecvRetransmitted), fn, "other", "other")
	}
	gauge(e.folded, float64(nListeners), "listeners")
	for _, d := range dests.list() {
		l := []string{d.Family.String(), "other", "other", "other"}
		gauge(e.destUsed, float64(d.Used), l...)
		gauge(e.destTW, float64(d.TimeWait), l...)
	}
	gauge(e.folded, float64(nDests), "destinations")
	e.health.otherSeries(gauge, views)
}

// collectTarget sends one target's series: those that change between
// samples (dump statistics, sample ages, counts and window maxima) built
// now, the rest from sampleSeries.
func (e *Exporter) collectTarget(ch chan<- prometheus.Metric, pe partErrors, t Target, v View, now time.Time) {
	lv := func(l ...string) []string { return safeLabels(t.Labels, l...) }
	gauge := func(d *prometheus.Desc, val float64, l ...string) {
		if m, ok := e.metric(pe, d, prometheus.GaugeValue, val, lv(l...)); ok {
			ch <- m
		}
	}
	counter := func(d *prometheus.Desc, val float64, l ...string) {
		if m, ok := e.metric(pe, d, prometheus.CounterValue, val, lv(l...)); ok {
			ch <- m
		}
	}

	files := make([]string, 0, len(v.KernelErrors))
	for f := range v.KernelErrors {
		files = append(files, f)
	}
	slices.Sort(files)
	for _, f := range files {
		counter(e.kernelErrors, float64(v.KernelErrors[f]), f)
	}
	series, errs := e.sampleSeries(t, &v)
	for _, m := range series {
		ch <- m
	}
	pe.merge(errs)
	for _, k := range Kinds {
		if k == HalfOpen && !v.HalfOpen.Enabled {
			continue
		}
		ks := v.Stats[k]
		kn := k.String()
		counter(e.dumps, float64(ks.Dumps), kn)
		counter(e.dumpErrors, float64(ks.Errors), kn)
		counter(e.dumpCPU, ks.CPU.Seconds(), kn)
		gauge(e.planned, ks.Planned.Seconds(), kn)
		if ks.LastTime.IsZero() {
			continue
		}
		gauge(e.dumpDuration, ks.LastDuration.Seconds(), kn)
		gauge(e.dumpSockets, float64(ks.LastSockets), kn)
		gauge(e.sampleAge, now.Sub(ks.LastTime).Seconds(), kn)
		if ks.Interval > 0 {
			gauge(e.interval, ks.Interval.Seconds(), kn)
		}
		if smp := v.Full; k == Full && smp != nil {
			gauge(e.unknown, float64(smp.Unknown), kn)
		} else if smp := v.Rare; k == Rare && smp != nil {
			gauge(e.unknown, float64(smp.Unknown), kn)
		} else if smp := v.Listen; k == Listen && smp != nil {
			gauge(e.unknown, float64(smp.Unknown), kn)
		}
	}
	if v.EhashKnown {
		private := 0.0
		if v.Ehash.Private {
			private = 1
		}
		gauge(e.ehashPrivate, private)
		gauge(e.ehashEntries, float64(v.Ehash.Entries))
	}
	e.collectHalfOpen(gauge, &v)
	if !v.Ready {
		// No full sample yet: report no socket counts rather than zeros.
		return
	}
	for _, f := range Families {
		fn := f.String()
		for _, st := range States {
			gauge(e.sockets, float64(v.Counts.Get(f, st)), fn, st.String())
			gauge(e.socketsMax, float64(v.Max.Get(f, st)), fn, st.String())
		}
	}
}

// buildSampleSeries builds the series of a view that depend only on its
// Latest and Full samples; listeners and destinations only once a full
// sample exists. prev and kept are the listeners reported one by one at the
// previous build and at this one, when some were folded.
// Series it cannot build are left out and recorded in pe.
func (e *Exporter) buildSampleSeries(pe partErrors, labels []string, v *View, prev map[ListenerKey]struct{}) (out []prometheus.Metric, kept map[ListenerKey]struct{}) {
	lv := func(l ...string) []string { return safeLabels(labels, l...) }
	gauge := func(d *prometheus.Desc, val float64, l ...string) {
		if m, ok := e.metric(pe, d, prometheus.GaugeValue, val, lv(l...)); ok {
			out = append(out, m)
		}
	}
	if smp := v.Latest; smp != nil {
		e.collectKernel(pe, func(m prometheus.Metric) { out = append(out, m) }, lv, &smp.Kernel)
		for _, g := range smp.CloseWait {
			// The command is a process name: anything its owner chose.
			cmd := SafeLabel(g.Command)
			gauge(e.cwSockets, float64(g.Count), g.Port, cmd)
			gauge(e.cwOldest, g.Oldest.Seconds(), g.Port, cmd)
		}
		gauge(e.cwUntracked, float64(smp.CloseWaitUntracked))
		gauge(e.folded, float64(smp.CloseWaitFolded), "closewait")
		out = e.appendEventSeries(out, pe, lv, smp.Events, v.Listeners)
	}
	if !v.Ready {
		return out, prev
	}
	keptL, other, folded := foldListeners(v.Listeners, e.opts.MaxListeners, prev)
	if folded > 0 {
		kept = make(map[ListenerKey]struct{}, len(keptL))
		for _, l := range keptL {
			kept[l.ListenerKey] = struct{}{}
		}
	}
	emit := func(l Listener, addr, port string) {
		fn := l.Family.String()
		gauge(e.lQueue, float64(l.QueueLen), fn, addr, port)
		gauge(e.lLimit, float64(l.QueueLimit), fn, addr, port)
		gauge(e.lSynRecv, float64(l.SynRecv), fn, addr, port)
		gauge(e.lSockets, float64(l.Sockets), fn, addr, port)
		gauge(e.health.synRetrans, float64(l.SynRecvRetransmitted), fn, addr, port)
	}
	for _, l := range keptL {
		emit(l, l.Addr.String(), strconv.Itoa(int(l.Port)))
	}
	for _, l := range other {
		emit(l, "other", "other")
	}
	gauge(e.folded, float64(folded), "listeners")

	keptD, otherD, foldedD := foldDestinations(v.Full, e.opts.MaxDestinations)
	for _, d := range keptD {
		l := []string{d.Family.String(), d.Local.String(), d.Remote.String(), strconv.Itoa(int(d.RemotePort))}
		gauge(e.destUsed, float64(d.Used), l...)
		gauge(e.destTW, float64(d.TimeWait), l...)
	}
	for _, d := range otherD {
		l := []string{d.Family.String(), "other", "other", "other"}
		gauge(e.destUsed, float64(d.Used), l...)
		gauge(e.destTW, float64(d.TimeWait), l...)
	}
	gauge(e.folded, float64(foldedD), "destinations")
	e.health.series(gauge, v.Full)
	return out, kept
}

// collectKernel emits the kernel counters, orphans and sysctls that could
// be read.
func (e *Exporter) collectKernel(pe partErrors, emit func(prometheus.Metric), lv func(...string) []string, k *Kernel) {
	send := func(d *prometheus.Desc, t prometheus.ValueType, val float64, l ...string) {
		if m, ok := e.metric(pe, d, t, val, lv(l...)); ok {
			emit(m)
		}
	}
	for _, n := range e.netstat {
		if v, ok := k.Counters.Get(n.field); ok {
			send(n.desc, prometheus.CounterValue, float64(v))
		}
	}
	if v, ok := k.Sockstat.Get(procnet.SockstatTCPOrphan); ok {
		send(e.orphans, prometheus.GaugeValue, float64(v))
	}
	for _, s := range procnet.IntSysctls() {
		if v, ok := k.Sysctls.Int(s); ok {
			send(e.sysctl, prometheus.GaugeValue, float64(v), s.Name())
		}
	}
	if n, ok := k.Sysctls.UsablePorts(); ok {
		send(e.portsUsable, prometheus.GaugeValue, float64(n))
	}
}

// foldDestinations keeps the limit most used destinations of a full sample
// and sums the rest, with what the sample itself folded, into one entry per
// family.
func foldDestinations(smp *Sample, limit int) (kept, other []detect.Destination, folded int) {
	if smp == nil {
		return nil, nil, 0
	}
	ds := smp.Destinations
	var sums familySums[detect.Destination]
	for _, d := range smp.DestinationsOther {
		addDestination(sums.of(d.Family), d)
	}
	folded = smp.DestinationsFolded
	if len(ds) > limit {
		for _, d := range ds[limit:] {
			addDestination(sums.of(d.Family), d)
		}
		folded += len(ds) - limit
		ds = ds[:limit]
	}
	return ds, sums.list(), folded
}

// foldListeners keeps the limit listeners that matter most and sums the
// rest into one "other" entry per family. Listeners rank by accept-queue
// length, then SYN_RECV count, then address and port; a listener in prev
// (kept at the previous sample) ranks with its queue plus a quarter plus
// one, so that listeners of about equal queues do not swap places from one
// sample to the next.
func foldListeners(ls []Listener, limit int, prev map[ListenerKey]struct{}) (kept, other []Listener, folded int) {
	if len(ls) <= limit {
		return ls, nil, 0
	}
	score := func(l Listener) uint64 {
		q := uint64(l.QueueLen)
		if _, ok := prev[l.ListenerKey]; ok {
			q += q/4 + 1
		}
		return q
	}
	sorted := slices.Clone(ls)
	slices.SortStableFunc(sorted, func(x, y Listener) int {
		if c := cmp.Compare(score(y), score(x)); c != 0 {
			return c
		}
		if c := cmp.Compare(y.SynRecv, x.SynRecv); c != 0 {
			return c
		}
		return x.ListenerKey.Compare(y.ListenerKey)
	})
	kept = sorted[:limit]
	var sums familySums[Listener]
	for _, l := range sorted[limit:] {
		addListener(sums.of(l.Family), l)
	}
	return kept, sums.list(), len(ls) - limit
}

// familySums holds one "other" entry per address family: the sum of the
// entries folded into it.
type familySums[T any] struct {
	sums    [2]T
	present [2]bool
}

// of returns the entry of family f, marking it present.
func (p *familySums[T]) of(f diag.Family) *T {
	i := familyIndex(f)
	p.present[i] = true
	return &p.sums[i]
}

// list returns the present entries, IPv4 first.
func (p *familySums[T]) list() []T {
	var out []T
	for i := range p.sums {
		if p.present[i] {
			out = append(out, p.sums[i])
		}
	}
	return out
}

// addListener adds l's queues and counts into sum.
func addListener(sum *Listener, l Listener) {
	sum.Family = l.Family
	sum.Sockets += l.Sockets
	sum.QueueLen += l.QueueLen
	sum.QueueLimit += l.QueueLimit
	sum.SynRecv += l.SynRecv
	sum.SynRecvRetransmitted += l.SynRecvRetransmitted
}

// addDestination adds d's ports into sum.
func addDestination(sum *detect.Destination, d detect.Destination) {
	sum.Family = d.Family
	sum.Used += d.Used
	sum.TimeWait += d.TimeWait
}
