package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
)

func TestHalfOpenFlags(t *testing.T) {
	cfg, _, err := parseFlags(nil, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.samplerOptions(nil)
	if o.HalfOpenInterval != collector.DefaultHalfOpenInterval || o.MaxHalfOpenGroups != 100 ||
		o.Detect.HalfOpenMinIdle != 15*time.Minute || o.Detect.HalfOpenMinCount != 10 {
		t.Errorf("defaults: interval %v, groups %d, %+v", o.HalfOpenInterval, o.MaxHalfOpenGroups, o.Detect)
	}
	cfg, _, err = parseFlags([]string{"--halfopen.interval=0", "--halfopen.min-idle=30s", "--halfopen.min-count=3", "--halfopen.max-groups=7"}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o = cfg.samplerOptions(nil)
	if o.HalfOpenInterval >= 0 || o.MaxHalfOpenGroups != 7 || o.Detect.HalfOpenMinIdle != 30*time.Second || o.Detect.HalfOpenMinCount != 3 {
		t.Errorf("flags not applied: interval %v, groups %d, %+v", o.HalfOpenInterval, o.MaxHalfOpenGroups, o.Detect)
	}
	for _, args := range [][]string{
		{"--halfopen.interval=-1s"},
		{"--halfopen.min-idle=0s"},
		{"--halfopen.min-count=0"},
		{"--halfopen.max-groups=0"},
	} {
		flag, _, _ := strings.Cut(args[0], "=")
		_, _, err := parseFlags(args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%v: error %v, want one naming %s", args, err, flag)
		}
	}
}
