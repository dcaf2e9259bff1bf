package collector

// The Exporter's descriptors: the exported kernel counters, the parts of
// tcpstate_scrape_errors_total each Desc belongs to, and Describe. The
// Descs themselves are built in NewExporter.

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

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
