// Command gen writes the Grafana dashboards of tcpstate-exporter as JSON
// models, one file per dashboard. The dashboards are defined in boards.go
// on the builders of model.go. `go generate ./dashboards` runs it in
// dashboards/ and then copies the files into the Helm chart:
//
//	go run ./dashboards/gen -out dashboards
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	out := flag.String("out", ".", "directory to write the dashboards' JSON files into")
	flag.Parse()
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// write renders every dashboard into dir.
func write(dir string) error {
	files, err := render()
	if err != nil {
		return err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// render returns every dashboard's JSON model keyed by file name.
func render() (map[string][]byte, error) {
	out := map[string][]byte{}
	for name, d := range allDashboards() {
		if err := checkSlug(strings.TrimPrefix(d.UID, "tcpstate-")); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(d); err != nil {
			return nil, fmt.Errorf("encoding %s: %w", name, err)
		}
		out[name] = buf.Bytes()
	}
	return out, nil
}
