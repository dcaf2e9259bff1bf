package main

import (
	"cmp"
	"context"
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
	"github.com/tcpstate/tcpstate-exporter/diag"
)

// snapshotConfig holds the snapshot subcommand's flags.
type snapshotConfig struct {
	wait time.Duration
}

// addSnapshotCommand declares the snapshot subcommand and its flags.
func addSnapshotCommand(app *kingpin.Application, c *snapshotConfig) {
	cmd := app.Command("snapshot", "Sample this node's namespace twice (--snapshot.wait apart), print the socket states, the listeners at risk and the active findings, and exit.")
	cmd.Flag("snapshot.wait", "Time between the full dump and the second (rare) dump, so that rates and detectors have two points; 0 takes one dump.").Default("1s").DurationVar(&c.wait)
}

func (c *snapshotConfig) validate() error {
	if c.wait < 0 || c.wait > time.Minute {
		return fmt.Errorf("--snapshot.wait=%v: must be between 0 and 1m", c.wait)
	}
	return nil
}

// runSnapshot is the snapshot subcommand: exit 0 after printing, 1 with one
// line on stderr when the kernel could not be read.
func runSnapshot(cfg *config, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return snapshotMain(ctx, snapshotOptions{
		Method:   cfg.diagMethod(),
		Wait:     cfg.snapshot.wait,
		Detect:   cfg.detect.cfg,
		Findings: findingsFor,
	}, stdout, stderr)
}

// snapshotMain takes and prints a snapshot and returns the exit code.
func snapshotMain(ctx context.Context, opts snapshotOptions, stdout, stderr io.Writer) int {
	snap, err := takeSnapshot(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "tcpstate-exporter: snapshot: %v\n", err)
		return 1
	}
	if host, err := os.Hostname(); err == nil {
		snap.Host = host
	}
	if err := snap.write(stdout); err != nil {
		fmt.Fprintf(stderr, "tcpstate-exporter: snapshot: writing: %v\n", err)
		return 1
	}
	return 0
}

// snapshotOptions configure takeSnapshot.
type snapshotOptions struct {
	// Dial opens sock_diag in the namespace to read; nil: the caller's.
	Dial   func() (*diag.Conn, error)
	Method diag.Method
	// Wait separates the full dump from the rare one; 0 skips the second.
	Wait time.Duration
	// Detect holds the detector thresholds (the --detect.* and
	// --closewait.* flags); the zero value means the defaults.
	Detect detect.Config
	// Findings runs the detectors over the samples; nil when they are not
	// available.
	Findings func(collector.Target) []detect.Finding
}

// snapshot is what the snapshot subcommand prints.
type snapshot struct {
	Host     string
	Time     time.Time
	Dumps    int
	Sockets  int // in the full dump
	Counts   collector.Counts
	Listener []collector.Listener // every listener of the latest dump
	// Findings are nil with FindingsOK false when no detector is wired.
	Findings   []detect.Finding
	FindingsOK bool
}

// takeSnapshot samples once fully, then (after opts.Wait) once more for the
// rare states, and runs the detectors over the result.
func takeSnapshot(ctx context.Context, opts snapshotOptions) (*snapshot, error) {
	interval := max(opts.Wait, 10*time.Millisecond)
	s := collector.NewSampler(collector.Options{
		Interval: interval,
		Window:   interval,
		Method:   opts.Method,
		Dial:     opts.Dial,
		Detect:   opts.Detect,
		Logger:   slog.New(slog.DiscardHandler),
	})
	defer s.Close()
	full, err := s.Sample(collector.Full)
	if err != nil {
		return nil, err
	}
	dumps := 1
	if opts.Wait > 0 {
		t := time.NewTimer(opts.Wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("interrupted: %w", ctx.Err())
		case <-t.C:
		}
		if _, err := s.Sample(collector.Rare); err != nil {
			return nil, err
		}
		dumps++
	}
	now := time.Now()
	v := s.View(now)
	snap := &snapshot{
		Time:     now,
		Dumps:    dumps,
		Sockets:  full.Dump.Sockets,
		Counts:   v.Counts,
		Listener: v.Listeners,
	}
	if opts.Findings != nil {
		snap.Findings = opts.Findings(collector.Target{Sampler: s})
		snap.FindingsOK = true
	}
	return snap, nil
}

// maxRiskListeners is how many listeners at risk the snapshot prints.
const maxRiskListeners = 20

// atRisk reports whether a listener's accept queue is at least half full or
// it has half-open connections.
func atRisk(l collector.Listener) bool {
	return l.SynRecv > 0 || (l.QueueLen > 0 && 2*l.QueueLen >= l.QueueLimit)
}

// fill is the accept queue's length relative to its limit.
func fill(l collector.Listener) float64 {
	if l.QueueLimit == 0 {
		if l.QueueLen > 0 {
			return 1
		}
		return 0
	}
	return float64(l.QueueLen) / float64(l.QueueLimit)
}

// risky returns the listeners at risk, fullest queue first, then most
// SYN_RECV, then by address.
func risky(ls []collector.Listener) []collector.Listener {
	var out []collector.Listener
	for _, l := range ls {
		if atRisk(l) {
			out = append(out, l)
		}
	}
	slices.SortStableFunc(out, func(x, y collector.Listener) int {
		if c := cmp.Compare(fill(y), fill(x)); c != 0 {
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
	fmt.Fprintf(w, "TCP sockets on %s at %s (%s; %d sockets in the full dump)\n\n",
		host, s.Time.UTC().Format(time.RFC3339), dumps, s.Sockets)

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

	rl := risky(s.Listener)
	fmt.Fprintf(w, "\nListeners at risk (accept queue at least half full, or SYN_RECV): %d of %d\n", len(rl), len(s.Listener))
	if len(rl) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "FAMILY\tADDRESS\tPORT\tACCEPT_QUEUE\tLIMIT\tFILL\tSYN_RECV\tSOCKETS")
		for _, l := range rl[:min(len(rl), maxRiskListeners)] {
			pct := "-"
			if l.QueueLimit > 0 {
				pct = strconv.FormatUint(l.QueueLen*100/l.QueueLimit, 10) + "%"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%d\t%d\n", l.Family, l.Addr, l.Port, l.QueueLen, l.QueueLimit, pct, l.SynRecv, l.Sockets)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if more := len(rl) - maxRiskListeners; more > 0 {
			fmt.Fprintf(w, "... and %d more\n", more)
		}
	}

	if !s.FindingsOK {
		fmt.Fprintln(w, "\nFindings: no detectors in this build")
		return nil
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
