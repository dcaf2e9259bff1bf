package collector

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Parts of a collection, the part label values of
// tcpstate_scrape_errors_total. A series that cannot be built is left out
// and counted under the part it belongs to; the rest of the collection
// goes on.
const (
	PartSockets      = "sockets"      // tcpstate_sockets, tcpstate_sockets_max
	PartListeners    = "listeners"    // tcpstate_listener_*
	PartDestinations = "destinations" // tcpstate_destination_*
	PartCloseWait    = "closewait"    // tcpstate_close_wait_*
	PartKernel       = "kernel"       // kernel counters, sysctls, read errors
	PartSampler      = "sampler"      // dump statistics, sample ages, folded series
	PartAlerts       = "alerts"       // tcpstate_alert, tcpstate_alerts_dropped
	PartNetns        = "netns"        // tcpstate_netns_*
	PartEvents       = "events"       // the eBPF event families
)

// ScrapeParts lists the part label values, in the order they are exported.
func ScrapeParts() []string {
	return []string{PartAlerts, PartCloseWait, PartDestinations, PartEvents, PartKernel, PartListeners, PartNetns, PartSampler, PartSockets}
}

// knownParts is the set of ScrapeParts.
var knownParts = func() map[string]bool {
	m := map[string]bool{}
	for _, p := range ScrapeParts() {
		m[p] = true
	}
	return m
}()

// maxReasonLen bounds the error text kept per part for Failing.
const maxReasonLen = 200

// ScrapeErrors counts the series that collections could not build, per
// part, and remembers whether the latest collection of each part failed.
// It is a prometheus.Collector of tcpstate_scrape_errors_total{part}. The
// Exporter, the alert engine's collector and the netns Manager's collector
// report to the one ScrapeErrors the agent registers; its methods are safe
// for concurrent use.
type ScrapeErrors struct {
	desc   *prometheus.Desc
	logger *slog.Logger

	mu     sync.Mutex
	totals map[string]uint64
	// failing holds, for each part whose latest collection failed, the
	// first error of that collection.
	failing map[string]failure
}

// NewScrapeErrors returns a ScrapeErrors that logs the first failure of a
// part (and its recovery) to logger; nil means slog.Default().
func NewScrapeErrors(logger *slog.Logger) *ScrapeErrors {
	if logger == nil {
		logger = slog.Default()
	}
	s := &ScrapeErrors{
		desc: prometheus.NewDesc(namespace+"_scrape_errors_total",
			"Series a scrape could not build (an invalid label value, say) and left out, by part of the collection; the rest of the scrape is served.",
			[]string{"part"}, nil),
		logger:  logger,
		totals:  map[string]uint64{},
		failing: map[string]failure{},
	}
	for _, p := range ScrapeParts() {
		s.totals[p] = 0
	}
	return s
}

// Record records the outcome of one collection of part: errs are the
// series it left out, none for a collection that built every series. A
// part not in ScrapeParts is recorded as PartSampler, so that the label
// stays bounded.
func (s *ScrapeErrors) Record(part string, errs []error) {
	if s == nil {
		return
	}
	if !knownParts[part] {
		part = PartSampler
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, wasFailing := s.failing[part]
	if len(errs) == 0 {
		if wasFailing {
			delete(s.failing, part)
			s.logger.Info("scrape part builds every series again", "part", part)
		}
		return
	}
	s.totals[part] += uint64(len(errs))
	reason := errs[0].Error()
	if len(reason) > maxReasonLen {
		reason = strings.ToValidUTF8(reason[:maxReasonLen], "") + "..."
	}
	s.failing[part] = failure{reason: reason, at: time.Now()}
	if !wasFailing {
		s.logger.Error("scrape left series out; the rest is served", "part", part, "series", len(errs), "err", reason)
	}
}

// failure is a part's failing collection: the first error and when.
type failure struct {
	reason string
	at     time.Time
}

// FailingFor is how long a part's failed collection counts as its state
// without a newer collection. Nothing may scrape an unready pod (a
// Service's endpoints list ready pods only), so a state that only a scrape
// could clear would hold a pod unready for good; after FailingFor it is
// ready again, and a scrape that still fails makes it unready again.
const FailingFor = 2 * time.Minute

// Failing returns "part: first error" for each part whose latest
// collection, within FailingFor, left series out, sorted; nil when none
// did.
func (s *ScrapeErrors) Failing() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for p, f := range s.failing {
		if time.Since(f.at) < FailingFor {
			out = append(out, p+": "+f.reason)
		}
	}
	slices.Sort(out)
	return out
}

// Describe sends the Desc of tcpstate_scrape_errors_total.
func (s *ScrapeErrors) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

// Collect sends tcpstate_scrape_errors_total, one series per part.
func (s *ScrapeErrors) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	totals := make([]uint64, 0, len(s.totals))
	parts := ScrapeParts()
	for _, p := range parts {
		totals = append(totals, s.totals[p])
	}
	s.mu.Unlock()
	for i, p := range parts {
		// The label value is one of ours: this cannot fail.
		if m, err := prometheus.NewConstMetric(s.desc, prometheus.CounterValue, float64(totals[i]), p); err == nil {
			ch <- m
		}
	}
}

// partErrors collects the failures of one collection by part.
type partErrors map[string][]error

// add records err under part.
func (pe partErrors) add(part string, err error) { pe[part] = append(pe[part], err) }

// merge adds the failures of o.
func (pe partErrors) merge(o partErrors) {
	for p, errs := range o {
		pe[p] = append(pe[p], errs...)
	}
}
