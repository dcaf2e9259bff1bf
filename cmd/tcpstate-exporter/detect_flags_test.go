package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
)

func TestDetectFlagDefaults(t *testing.T) {
	cfg, _, err := parseFlags(nil, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.detect.cfg != detect.DefaultConfig() {
		t.Errorf("flag defaults differ from detect.DefaultConfig():\n got %+v\nwant %+v", cfg.detect.cfg, detect.DefaultConfig())
	}
	if cfg.detect.destinationsMax != 50 {
		t.Errorf("--collector.destinations.max default %d, want 50", cfg.detect.destinationsMax)
	}
}

func TestDetectFlagValues(t *testing.T) {
	cfg, _, err := parseFlags([]string{
		"--closewait.min-age=2m", "--closewait.threshold=3", "--detect.ports.ratio=0.97",
		"--detect.synrecv.cookie-rate=50", "--collector.destinations.max=7", "--detect.orphans.ratio=0.9",
	}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.detect.cfg
	if c.CloseWaitMinAge != 2*time.Minute || c.CloseWaitThreshold != 3 || c.PortsRatio != 0.97 || c.CookieRate != 50 || cfg.detect.destinationsMax != 7 {
		t.Errorf("flags not applied: %+v, destinations %d", c, cfg.detect.destinationsMax)
	}
	if c.PortsCriticalRatio != 0.97 || c.OrphanCriticalRatio != 0.9 {
		t.Errorf("critical tiers %v %v, want raised to the warning ratios", c.PortsCriticalRatio, c.OrphanCriticalRatio)
	}
}

func TestDetectFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--detect.ports.ratio=1.2"},
		{"--detect.accept-queue.ratio=0"},
		{"--closewait.threshold=0"},
		{"--closewait.min-age=-1s"},
		{"--collector.destinations.max=0"},
		{"--closewait.growth-window=20m"},
		{"--detect.resets.factor=0.5"},
	} {
		flag, _, _ := strings.Cut(args[0], "=")
		_, _, err := parseFlags(args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%v: error %v, want one naming %s", args, err, flag)
		}
	}
}
