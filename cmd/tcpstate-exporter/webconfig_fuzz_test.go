package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzWebConfig feeds arbitrary web configuration files to the startup
// validation: it must accept the file or reject it with one line naming
// --web.config.file, never panic.
func FuzzWebConfig(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "web", "*.yml"))
	for _, name := range seeds {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("basic_auth_users:\n  admin: $2y$10$abcdefghijklmnopqrstuv\n"))
	f.Add([]byte("tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n"))
	f.Add([]byte("http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"))
	f.Add([]byte(""))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content []byte) {
		path := filepath.Join(dir, "web.yml")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := parseFlags([]string{"--web.config.file=" + path}, io.Discard, io.Discard)
		if err == nil {
			return
		}
		msg := err.Error()
		if !strings.Contains(msg, "--web.config.file="+path) || strings.Contains(msg, "\n") {
			t.Fatalf("rejection is not one line naming the flag: %q", msg)
		}
	})
}
