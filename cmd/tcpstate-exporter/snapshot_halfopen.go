package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
)

// maxHalfOpenRows is how many half-open groups the snapshot prints.
const maxHalfOpenRows = 20

// snapshotLookupTimeout bounds the snapshot's owner lookups: about 850,000
// open descriptors.
const snapshotLookupTimeout = 3 * time.Second

// sweep runs the half-open sweep of the snapshot's sampler.
func (s *snapshot) sweep(smp *collector.Sampler) {
	s.HalfOpenMinIdle = smp.DetectConfig().HalfOpenMinIdle
	s.HalfOpen, s.HalfOpenErr = smp.Sweep()
}

// writeHalfOpen prints the half-open section: suspects by local port and
// command, most first.
func (s *snapshot) writeHalfOpen(w io.Writer) error {
	switch {
	case s.HalfOpenErr != nil:
		fmt.Fprintf(w, "\nHalf-open suspects: sweep failed: %v\n", s.HalfOpenErr)
		return nil
	case s.HalfOpen == nil:
		return nil
	}
	ho := s.HalfOpen
	fmt.Fprintf(w, "\nHalf-open suspects (ESTABLISHED, no timer armed, nothing received for over %v): %d of %d ESTABLISHED sockets without a timer\n",
		s.HalfOpenMinIdle, ho.Suspects, ho.NoTimer)
	if len(ho.Groups) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tCOMMAND\tPIDS\tCONNECTIONS\tOLDEST_IDLE\tLISTENERS\tREMOTES")
	for _, g := range ho.Groups[:min(len(ho.Groups), maxHalfOpenRows)] {
		pids := make([]string, 0, len(g.PIDs))
		for _, p := range g.PIDs {
			pids = append(pids, strconv.Itoa(p))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", g.Port, dash(collector.SafeLabel(g.Command)), dash(strings.Join(pids, ",")),
			g.Count, g.OldestIdle.Round(time.Second), dash(strings.Join(g.Listeners, ",")), dash(strings.Join(g.Remotes, ",")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if more := len(ho.Groups) - maxHalfOpenRows; more > 0 {
		fmt.Fprintf(w, "... and %d more\n", more)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
