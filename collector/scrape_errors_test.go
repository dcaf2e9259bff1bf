package collector

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestExporterCountsSeriesItCannotBuild feeds the Exporter a target whose
// label values do not match its label names (as a bug in a target source
// would): its series are left out and counted, the other target's are all
// served, and the collection is not cut short.
func TestExporterCountsSeriesItCannotBuild(t *testing.T) {
	proc := writeProc(t, defaultProcFiles())
	good := NewSampler(SamplerOptions{Dial: fakeDial(nil), ProcRoot: proc, Logger: quiet, LookupOwners: noLookup(t)})
	bad := NewSampler(SamplerOptions{Dial: fakeDial(nil), ProcRoot: proc, Logger: quiet, LookupOwners: noLookup(t)})
	for _, s := range []*Sampler{good, bad} {
		if _, err := s.Sample(Full); err != nil {
			t.Fatal(err)
		}
	}
	errs := NewScrapeErrors(quiet)
	e := NewExporter(func() []Target {
		return []Target{{Sampler: good, Labels: []string{"host"}}, {Sampler: bad, Labels: []string{"1", "extra"}}}
	}, ExporterOptions{TargetLabels: []string{"netns"}, Errors: errs})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e, errs)
	for range 2 {
		if _, err := reg.Gather(); err != nil {
			t.Fatalf("gather: %v", err)
		}
	}
	// 22 tcpstate_sockets series of the good target, none of the bad.
	if n := testutil.CollectAndCount(e, "tcpstate_sockets"); n != 22 {
		t.Errorf("%d tcpstate_sockets series, want the good target's 22", n)
	}
	failing := errs.Failing()
	if len(failing) == 0 || !strings.Contains(strings.Join(failing, ";"), "sockets: ") {
		t.Errorf("Failing() = %v, want the sockets part among them", failing)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() == "tcpstate_scrape_errors_total" {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	if total == 0 {
		t.Error("tcpstate_scrape_errors_total counted nothing")
	}
	// A collection without failures clears the part.
	errs.Record(PartSockets, nil)
	for _, f := range errs.Failing() {
		if strings.HasPrefix(f, "sockets: ") {
			t.Errorf("sockets still failing after a clean collection: %v", f)
		}
	}
	if problems, err := testutil.CollectAndLint(errs); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// TestScrapeErrorsBoundsParts checks that an unknown part is counted under
// PartSampler rather than growing the label's values.
func TestScrapeErrorsBoundsParts(t *testing.T) {
	s := NewScrapeErrors(quiet)
	s.Record("made-up", []error{errors.New("x")})
	if n := testutil.CollectAndCount(s); n != len(ScrapeParts()) {
		t.Errorf("%d series, want one per part (%d)", n, len(ScrapeParts()))
	}
	if f := s.Failing(); len(f) != 1 || !strings.HasPrefix(f[0], PartSampler+": ") {
		t.Errorf("Failing() = %v", f)
	}
}

// TestScrapeErrorsFailingExpires: a part's failure stops counting after
// FailingFor without a newer collection, so that an unready pod, which
// nothing scrapes, becomes ready again (and unready at the next failing
// scrape).
func TestScrapeErrorsFailingExpires(t *testing.T) {
	s := NewScrapeErrors(quiet)
	s.Record(PartAlerts, []error{errors.New("bad label")})
	if f := s.Failing(); len(f) != 1 {
		t.Fatalf("Failing() right after a failure = %v, want the alerts part", f)
	}
	s.mu.Lock()
	f := s.failing[PartAlerts]
	f.at = time.Now().Add(-FailingFor - time.Second)
	s.failing[PartAlerts] = f
	s.mu.Unlock()
	if f := s.Failing(); len(f) != 0 {
		t.Errorf("Failing() after FailingFor without a collection = %v, want none", f)
	}
	s.Record(PartAlerts, []error{errors.New("bad label")})
	if f := s.Failing(); len(f) != 1 {
		t.Errorf("Failing() after a new failing collection = %v, want the alerts part", f)
	}
}
