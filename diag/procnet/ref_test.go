package procnet

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// This file holds deliberately naive reference parsers, written with the
// standard library's string functions, that the fast parsers are checked
// against in unit and fuzz tests.

var refIntRE = regexp.MustCompile(`^-?[0-9]+$`)

func refLines(data string) []string {
	if data == "" {
		return nil
	}
	lines := strings.Split(data, "\n")
	if strings.HasSuffix(data, "\n") {
		lines = lines[:len(lines)-1]
	}
	return lines
}

func refFields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' })
}

func refBlank(s string) bool { return len(refFields(s)) == 0 }

func refSection(line string) (string, string, bool) {
	sec, rest, ok := strings.Cut(line, ":")
	if !ok || sec == "" || strings.ContainsAny(sec, " \t\r") {
		return "", "", false
	}
	return sec, rest, true
}

// refErr is the outcome the reference parser expects: a sentinel and a line.
type refErr struct {
	sentinel error
	line     int
}

func (e *refErr) String() string {
	if e == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%v at line %d", e.sentinel, e.line)
}

var refFieldByName = func() map[string]Field {
	m := map[string]Field{}
	for _, f := range Fields() {
		m[f.String()] = f
	}
	return m
}()

// refParseCounters returns, for each known field, the last value seen.
func refParseCounters(data string) (map[Field]uint64, *refErr) {
	out := map[Field]uint64{}
	lines := refLines(data)
	for i := 0; i < len(lines); i++ {
		if refBlank(lines[i]) {
			continue
		}
		hdrLine := i + 1
		sec, names, ok := refSection(lines[i])
		if !ok {
			return nil, &refErr{ErrSyntax, hdrLine}
		}
		if i+1 >= len(lines) {
			return nil, &refErr{ErrTruncated, hdrLine}
		}
		i++
		vsec, vals, ok := refSection(lines[i])
		if !ok {
			return nil, &refErr{ErrSyntax, i + 1}
		}
		if vsec != sec {
			return nil, &refErr{ErrSectionMismatch, i + 1}
		}
		ns, vs := refFields(names), refFields(vals)
		for c := 0; c < max(len(ns), len(vs)); c++ {
			if c >= len(ns) || c >= len(vs) {
				return nil, &refErr{ErrFieldCount, i + 1}
			}
			if f, known := refFieldByName[sec+":"+ns[c]]; known {
				u, err := strconv.ParseUint(vs[c], 10, 64)
				if err != nil {
					return nil, &refErr{ErrValue, i + 1}
				}
				out[f] = u
			} else if !refIntRE.MatchString(vs[c]) {
				return nil, &refErr{ErrValue, i + 1}
			}
		}
	}
	return out, nil
}

var refSockstatKeys = map[string]SockstatField{
	"TCP:inuse":  SockstatTCPInUse,
	"TCP:orphan": SockstatTCPOrphan,
	"TCP:tw":     SockstatTCPTimeWait,
	"TCP:alloc":  SockstatTCPAlloc,
	"TCP:mem":    SockstatTCPMem,
	"TCP6:inuse": SockstatTCP6InUse,
}

func refParseSockstat(data string) (map[SockstatField]int64, *refErr) {
	out := map[SockstatField]int64{}
	for i, line := range refLines(data) {
		if refBlank(line) {
			continue
		}
		sec, rest, ok := refSection(line)
		if !ok {
			return nil, &refErr{ErrSyntax, i + 1}
		}
		toks := refFields(rest)
		for j := 0; j < len(toks); j += 2 {
			if j+1 >= len(toks) {
				return nil, &refErr{ErrFieldCount, i + 1}
			}
			n, err := strconv.ParseInt(toks[j+1], 10, 64)
			if err != nil || !refIntRE.MatchString(toks[j+1]) {
				return nil, &refErr{ErrValue, i + 1}
			}
			if f, ok := refSockstatKeys[sec+":"+toks[j]]; ok {
				out[f] = n
			}
		}
	}
	return out, nil
}

// checkAgainstRef compares a parser's error with the reference's verdict.
func checkAgainstRef(err error, want *refErr) error {
	switch {
	case err == nil && want == nil:
		return nil
	case err == nil:
		return fmt.Errorf("parser accepted input, reference says %v", want)
	case want == nil:
		return fmt.Errorf("parser failed (%w), reference accepts input", err)
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("error %w is not a *ParseError", err)
	}
	if !errors.Is(err, want.sentinel) || pe.Line != want.line {
		return fmt.Errorf("parser error %q (line %d), reference expects %v", err.Error(), pe.Line, want)
	}
	return nil
}
