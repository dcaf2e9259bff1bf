package collector

import "github.com/tcpstate/tcpstate-exporter/collector/detect"

// DetectConfig returns the thresholds the Sampler's detectors and
// aggregation use: SamplerOptions.Detect, or detect.DefaultConfig() where that was
// the zero value or invalid.
func (s *Sampler) DetectConfig() detect.Config { return s.opts.Detect }
