package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/collector/netns"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// snapshotConfig holds the snapshot subcommand's flags.
type snapshotConfig struct {
	wait time.Duration
}

// addSnapshotCommand declares the snapshot subcommand and its flags.
func addSnapshotCommand(app *kingpin.Application, c *snapshotConfig) {
	cmd := app.Command("snapshot", "Sample this process's network namespace (with --netns=all: every namespace on the node) twice, --snapshot.wait apart, print the socket states, the listeners at risk and the active findings, and exit.")
	cmd.Flag("snapshot.wait", "Time between the full dump and the second (rare) dump, so that rates and detectors have two points; 0 takes one dump.").Default("1s").DurationVar(&c.wait)
}

func (c *snapshotConfig) validate() error {
	if c.wait < 0 || c.wait > time.Minute {
		return fmt.Errorf("--snapshot.wait=%v: must be between 0 and 1m", c.wait)
	}
	return nil
}

// runSnapshot is the snapshot subcommand: exit 0 after printing, 1 with one
// line on stderr for each namespace whose kernel state could not be read.
func runSnapshot(cfg *config, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := snapshotOptions{
		Method:   cfg.diagMethod(),
		Wait:     cfg.snapshot.wait,
		Detect:   cfg.detect.cfg,
		Findings: samplerFindings,
		HalfOpen: cfg.halfOpen.interval > 0,
	}
	opts.ProcRoot = cfg.procRoot
	if cfg.netns == "all" {
		opts.AllNamespaces = true
	}
	var err error
	if opts.Events, err = snapshotEventsFor(cfg); err != nil {
		fmt.Fprintf(stderr, "tcpstate-exporter: snapshot: %v\n", err)
		return 1
	}
	defer opts.Events.close()
	return snapshotMain(ctx, opts, stdout, stderr)
}

// snapshotMain takes and prints the snapshots and returns the exit code.
func snapshotMain(ctx context.Context, opts snapshotOptions, stdout, stderr io.Writer) int {
	targets := []snapshotTarget{{Dial: opts.Dial}}
	code := 0
	if opts.AllNamespaces {
		var failed int
		var err error
		targets, failed, err = namespaceTargets(opts.ProcRoot, opts.RunDirs, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "tcpstate-exporter: snapshot: %v\n", err)
			return 1
		}
		if failed > 0 {
			code = 1
		}
		defer func() {
			for _, t := range targets {
				t.close()
			}
		}()
	}
	if opts.Findings == nil {
		opts.Findings = samplerFindings
	}
	snaps, errs := takeSnapshots(ctx, opts, targets)
	host, _ := os.Hostname()
	for i, snap := range snaps {
		if errs[i] != nil {
			fmt.Fprintf(stderr, "tcpstate-exporter: snapshot: %s%v\n", targets[i].prefix(), errs[i])
			// A namespace that went away since discovery is no failure.
			if !errors.Is(errs[i], netns.ErrGone) {
				code = 1
			}
			continue
		}
		snap.Host = host
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		if err := snap.write(stdout); err != nil {
			fmt.Fprintf(stderr, "tcpstate-exporter: snapshot: writing: %v\n", err)
			return 1
		}
	}
	return code
}

// snapshotTarget is one network namespace to snapshot.
type snapshotTarget struct {
	// Dial opens sock_diag in the namespace; nil: the caller's.
	Dial func() (*diag.Conn, error)
	// InNetns runs a function inside the namespace (kernel counters and
	// sysctls); nil: the caller's.
	InNetns func(func() error) error
	// Namespace describes it with --netns=all, "" otherwise.
	Namespace string
	close     func()
}

func (t snapshotTarget) prefix() string {
	if t.Namespace == "" {
		return ""
	}
	return "network namespace " + t.Namespace + ": "
}

// namespaceTargets opens every network namespace on the node. One that
// cannot be opened is skipped with one line on stderr; failed counts those
// skipped for another reason than having gone away since discovery.
func namespaceTargets(procRoot string, runDirs []string, stderr io.Writer) (targets []snapshotTarget, failed int, err error) {
	if runDirs == nil {
		runDirs = netns.DefaultRunDirs
	}
	found, _, err := netns.Discover(procRoot, runDirs)
	if err != nil {
		return nil, 0, err
	}
	for _, ns := range found {
		h, err := netns.Open(ns, procRoot)
		if err != nil {
			fmt.Fprintf(stderr, "tcpstate-exporter: snapshot: network namespace %s skipped: %v\n", describeNamespace(ns), err)
			if !errors.Is(err, netns.ErrGone) {
				failed++
			}
			continue
		}
		targets = append(targets, snapshotTarget{Dial: h.Dial, InNetns: h.Do, Namespace: describeNamespace(ns), close: func() { h.Close() }})
	}
	return targets, failed, nil
}

// describeNamespace names a namespace for people: its netns label, then
// its bind mount or a process in it.
func describeNamespace(ns netns.Namespace) string {
	d := ns.Label()
	switch {
	case ns.Path != "":
		// A bind mount's file name is anyone's choice: no escapes reach the terminal.
		d += " (" + collector.SafeLabel(ns.Path) + ")"
	case ns.PID > 0:
		d += " (pid " + strconv.Itoa(ns.PID) + ")"
	}
	return d
}

// snapshotOptions configure snapshotMain and takeSnapshots.
type snapshotOptions struct {
	// Dial opens sock_diag in the namespace to read; nil: the caller's.
	// Ignored with AllNamespaces.
	Dial func() (*diag.Conn, error)
	// AllNamespaces snapshots every network namespace found under ProcRoot
	// and in RunDirs (nil: netns.DefaultRunDirs).
	AllNamespaces bool
	// ProcRoot is where procfs is mounted (--path.procfs); the samplers
	// read the kernel files and owners there. Empty: /proc.
	ProcRoot string
	RunDirs  []string

	Method diag.Method
	// Wait separates the full dump from the rare one; 0 skips the second.
	Wait time.Duration
	// Detect holds the detector thresholds (the --detect.*, --closewait.*
	// and --halfopen.* thresholds); the zero value means the defaults.
	Detect detect.Config
	// Findings returns the findings over a sampled target; nil means
	// samplerFindings, the detectors that run inside the target's Sampler.
	Findings findingsFunc
	// HalfOpen runs one half-open sweep after the full dump.
	HalfOpen bool
	// Events is the eBPF event source (snapshot_events.go); nil: no section.
	Events *snapshotEvents
}

// snapshot is what the snapshot subcommand prints.
type snapshot struct {
	Host string
	// Namespace describes the network namespace with --netns=all.
	Namespace string
	Time      time.Time
	Dumps     int
	Sockets   int // in the full dump
	Counts    collector.Counts
	Listener  []detect.Listener // every listener of the latest dump
	// Full is the full sample (connection health); RetransMin the
	// retransmission count from which its peers count as stalled.
	Full       *collector.Sample
	RetransMin uint64
	// Findings are the active findings over the latest sample.
	Findings []detect.Finding
	// Ehash describes the established hash (EhashKnown false before Linux
	// 6.1 or when it could not be read).
	Ehash      procnet.Ehash
	EhashKnown bool
	// HalfOpen is the half-open sweep, nil when none ran; HalfOpenErr its
	// failure.
	HalfOpen        *collector.HalfOpenSample
	HalfOpenErr     error
	HalfOpenMinIdle time.Duration
	// Events is the events section, nil when events were not asked for.
	Events *eventsSection
}

// takeSnapshots samples every target once fully, then (after opts.Wait,
// waited once for all) once more for the rare states, and takes the
// findings of the detectors, which ran after each sample. errs[i] is set
// where target i failed.
func takeSnapshots(ctx context.Context, opts snapshotOptions, targets []snapshotTarget) (snaps []*snapshot, errs []error) {
	interval := max(opts.Wait, 10*time.Millisecond)
	snaps, errs = make([]*snapshot, len(targets)), make([]error, len(targets))
	opts.Events.begin()
	samplers := make([]*collector.Sampler, len(targets))
	for i, t := range targets {
		s := collector.NewSampler(collector.SamplerOptions{
			Interval: interval,
			Window:   interval,
			Method:   opts.Method,
			Dial:     t.Dial,
			InNetns:  t.InNetns,
			ProcRoot: opts.ProcRoot,
			Detect:   opts.Detect,
			Logger:   slog.New(slog.DiscardHandler),
			// A one-off run can afford to scan every process's
			// descriptors for the owners of CLOSE_WAIT and half-open
			// sockets (about 3.5 us per descriptor).
			LookupTimeout: snapshotLookupTimeout,
		})
		defer s.Close()
		samplers[i] = s
		full, err := s.Sample(collector.Full)
		if err != nil {
			errs[i] = err
			continue
		}
		snaps[i] = &snapshot{Namespace: t.Namespace, Dumps: 1, Sockets: full.Dump.Sockets}
		if opts.HalfOpen {
			snaps[i].sweep(s)
		}
	}
	if opts.Wait > 0 {
		t := time.NewTimer(opts.Wait)
		select {
		case <-ctx.Done():
			t.Stop()
			for i := range errs {
				if errs[i] == nil {
					errs[i] = fmt.Errorf("interrupted: %w", ctx.Err())
				}
			}
			return snaps, errs
		case <-t.C:
		}
		for i, s := range samplers {
			if errs[i] != nil {
				continue
			}
			if _, err := s.Sample(collector.Rare); err != nil {
				errs[i] = err
				continue
			}
			snaps[i].Dumps++
		}
	}
	now := time.Now()
	for i, s := range samplers {
		if errs[i] != nil {
			continue
		}
		v := s.View(now)
		snap := snaps[i]
		snap.Time, snap.Counts, snap.Listener = now, v.Counts, v.Listeners
		snap.Ehash, snap.EhashKnown = v.Ehash, v.EhashKnown
		snap.Full, snap.RetransMin = v.Full, s.DetectConfig().PeerRetransMin
		snap.Events = opts.Events.section(targets[i])
		snap.Findings = opts.Findings(collector.Target{Sampler: s})
	}
	return snaps, errs
}

// maxRiskListeners is how many listeners at risk the snapshot prints.
const maxRiskListeners = 20

// risky returns the listeners at risk (detect.Listener.AtRisk), fullest
// accept queue first (detect.Listener.AcceptQueueFill), then most
// SYN_RECV, then in the order given (by address).
func risky(ls []detect.Listener) []detect.Listener {
	var out []detect.Listener
	for i := range ls {
		if ls[i].AtRisk() {
			out = append(out, ls[i])
		}
	}
	slices.SortStableFunc(out, func(x, y detect.Listener) int {
		if c := cmp.Compare(y.AcceptQueueFill(), x.AcceptQueueFill()); c != 0 {
			return c
		}
		return cmp.Compare(y.SynRecv, x.SynRecv)
	})
	return out
}

// write prints the snapshot as aligned plain text.
func (s *snapshot) write(w io.Writer) error {
	host := s.Host
	if host == "" {
		host = "this host"
	}
	dumps := "one full dump"
	if s.Dumps > 1 {
		dumps = "a full dump and a rare-state dump after it"
	}
	where := host
	if s.Namespace != "" {
		where += ", network namespace " + s.Namespace
	}
	fmt.Fprintf(w, "TCP sockets on %s at %s (%s; %d sockets in the full dump)\n\n",
		where, s.Time.UTC().Format(time.RFC3339), dumps, s.Sockets)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tIPV4\tIPV6\tTOTAL")
	var tot [2]uint64
	for _, st := range collector.States {
		v4, v6 := s.Counts.Get(diag.AFInet, st), s.Counts.Get(diag.AFInet6, st)
		tot[0] += v4
		tot[1] += v6
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", st, v4, v6, v4+v6)
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\n", tot[0], tot[1], tot[0]+tot[1])
	if err := tw.Flush(); err != nil {
		return err
	}

	if s.EhashKnown {
		if s.Ehash.Private {
			fmt.Fprintf(w, "\nEstablished hash: its own, %d buckets (net.ipv4.tcp_ehash_entries)\n", s.Ehash.Entries)
		} else {
			fmt.Fprintf(w, "\nEstablished hash: shared with the node, %d buckets: a dump here walks every sharing namespace's sockets (net.ipv4.tcp_child_ehash_entries set before a namespace is created gives it its own)\n", s.Ehash.Entries)
		}
	}

	rl := risky(s.Listener)
	fmt.Fprintf(w, "\nListeners at risk (accept queue at least half full, or SYN_RECV): %d of %d\n", len(rl), len(s.Listener))
	if len(rl) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "FAMILY\tADDRESS\tPORT\tACCEPT_QUEUE\tLIMIT\tFILL\tSYN_RECV\tSOCKETS\tSYNACK_RETRANSMITTED")
		for _, l := range rl[:min(len(rl), maxRiskListeners)] {
			pct := "-"
			if l.QueueLimit > 0 {
				pct = strconv.FormatUint(l.QueueLen*100/l.QueueLimit, 10) + "%"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%d\t%d\t%d\n", l.Family, l.Addr, l.Port, l.QueueLen, l.QueueLimit, pct, l.SynRecv, l.Sockets, l.SynRecvRetransmitted)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if more := len(rl) - maxRiskListeners; more > 0 {
			fmt.Fprintf(w, "... and %d more\n", more)
		}
	}

	if err := s.writeConnHealth(w); err != nil {
		return err
	}
	if err := s.writeHalfOpen(w); err != nil {
		return err
	}
	if err := s.writeEvents(w); err != nil {
		return err
	}

	fs := slices.Clone(s.Findings)
	slices.SortStableFunc(fs, func(x, y detect.Finding) int {
		if c := cmp.Compare(x.Severity.Rank(), y.Severity.Rank()); c != 0 {
			return c
		}
		if c := strings.Compare(x.Alert, y.Alert); c != 0 {
			return c
		}
		return strings.Compare(labelString(x.Labels), labelString(y.Labels))
	})
	fmt.Fprintf(w, "\nActive findings: %d\n", len(fs))
	for _, f := range fs {
		fmt.Fprintf(w, "\n%s  %s  %s  value=%s", cmp.Or(string(f.Severity), "-"), f.Alert, labelString(f.Labels), strconv.FormatFloat(f.Value, 'g', -1, 64))
		if f.For > 0 {
			fmt.Fprintf(w, "  (fires after %v)", f.For)
		}
		fmt.Fprintln(w)
		if f.Summary != "" {
			fmt.Fprintf(w, "  %s\n", f.Summary)
		}
		if f.Description != "" {
			fmt.Fprintf(w, "  %s\n", f.Description)
		}
		if len(f.Evidence) > 0 {
			tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			for i, k := range slices.Sorted(maps.Keys(f.Evidence)) {
				head := ""
				if i == 0 {
					head = "evidence:"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", head, k, f.Evidence[k])
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// labelString prints labels as {a="1", b="2"}, sorted.
func labelString(l map[string]string) string {
	parts := make([]string, 0, len(l))
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+strconv.Quote(l[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
