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
}

func TestDetectFlagValues(t *testing.T) {
	cfg, _, err := parseFlags([]string{
		"--closewait.min-age=2m", "--closewait.threshold=3", "--detect.ports.ratio=0.97",
		"--detect.synrecv.cookie-rate=50", "--detect.orphans.ratio=0.9",
	}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.detect.cfg
	if c.CloseWaitMinAge != 2*time.Minute || c.CloseWaitThreshold != 3 || c.PortsRatio != 0.97 || c.CookieRate != 50 {
		t.Errorf("flags not applied: %+v", c)
	}
	if cfg.detect.peersMax != 20 || cfg.detect.clientsMax != 3 {
		t.Errorf("--collector.peers.max %d, --collector.clients.max %d, want defaults 20 and 3", cfg.detect.peersMax, cfg.detect.clientsMax)
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
		{"--closewait.growth-window=20m"},
		{"--detect.resets.factor=0.5"},
		{"--collector.peers.max=0"},
		{"--collector.clients.max=0"},
		{"--detect.peer.retransmits=0"},
		{"--detect.peer.retransmits=300"},
		{"--detect.peer.min-sockets=0"},
		{"--detect.zero-window.min-duration=-1s"},
		{"--detect.client-hog.min-connections=0"},
		{"--detect.client-hog.share=1.5"},
		{"--detect.client-hog.allow=10.0.0.0/8,bogus"},
	} {
		flag, _, _ := strings.Cut(args[0], "=")
		_, _, err := parseFlags(args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%v: error %v, want one naming %s", args, err, flag)
		}
	}
}

func TestConnHealthFlagValues(t *testing.T) {
	cfg, _, err := parseFlags([]string{
		"--collector.peers.max=5", "--collector.clients.max=2", "--detect.peer.retransmits=6", "--detect.peer.min-sockets=3",
		"--detect.zero-window.min-duration=30s", "--detect.client-hog.min-connections=500", "--detect.client-hog.share=0.3",
		"--detect.client-hog.allow=10.0.0.0/8,192.0.2.1",
	}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.detect.cfg
	if cfg.detect.peersMax != 5 || cfg.detect.clientsMax != 2 || c.PeerRetransMin != 6 || c.PeerMinSockets != 3 || c.ZeroWindowMin != 30*time.Second ||
		c.ClientHogMin != 500 || c.ClientHogShare != 0.3 || c.ClientHogAllow != "10.0.0.0/8,192.0.2.1" {
		t.Errorf("flags not applied: %+v, peers %d, clients %d", c, cfg.detect.peersMax, cfg.detect.clientsMax)
	}
}
