//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// hardenNetnsPrefix names every namespace the hardening tests create.
const hardenNetnsPrefix = "tsh6-"

// exporterBinEnv names an environment variable that may hold the path of a
// prebuilt exporter binary for the hardening tests; without it they build
// one with `go build`.
const exporterBinEnv = "TCPSTATE_EXPORTER_BIN"

// exporterAddr is where the hardening tests' exporter listens inside its
// namespace.
const exporterAddr = "127.0.0.1:9874"

// The exporter binary of this test run, built (or copied from
// $TCPSTATE_EXPORTER_BIN) once into binDir, which TestMain removes.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
	noGo    bool
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// exporterBinary returns the exporter binary, in a directory every user
// may enter, so that it also runs after dropping to an unprivileged user.
func exporterBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() { binPath, binErr = buildBinary() })
	if noGo {
		t.Skip("the go command is needed to build the exporter: " + binErr.Error())
	}
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func buildBinary() (string, error) {
	dir, err := os.MkdirTemp("", "tsh6-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tcpstate-exporter")
	if src := os.Getenv(exporterBinEnv); src != "" {
		b, err := os.ReadFile(src)
		if err != nil {
			return "", fmt.Errorf("%s: %w", exporterBinEnv, err)
		}
		return bin, os.WriteFile(bin, b, 0o755)
	}
	if _, err := exec.LookPath("go"); err != nil {
		noGo = true
		return "", err
	}
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, os.Chmod(bin, 0o755)
}

// startExporter runs wrapper (a command line that executes its last
// argument, such as setpriv; may be empty), then the binary with args,
// inside ns, under fixture.StartProc. `ip netns exec` and the wrapper exec
// in place, so the process id is the exporter's. A cleanup stops it and
// waits for it.
func startExporter(t *testing.T, ctx context.Context, ns *fixture.Netns, bin string, wrapper []string, args ...string) *fixture.Proc {
	t.Helper()
	argv := append(append(append([]string{}, wrapper...), bin), args...)
	return fixture.StartProc(t, "exporter", ns.Command(ctx, argv[0], argv[1:]...), fixture.ProcOptions{})
}

// nsTransport returns an HTTP transport whose connections are made inside
// ns, without TCP keepalive probes.
func nsTransport(ns *fixture.Netns, tlsConf *tls.Config) *http.Transport {
	return &http.Transport{DialContext: ns.DialContext, TLSClientConfig: tlsConf, ForceAttemptHTTP2: false}
}

// get fetches url with optional basic auth and returns the status and body.
func get(c *http.Client, url, user, pass string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// waitReady polls /-/ready until it answers 200, the process exits, or 20
// seconds pass.
func waitReady(t *testing.T, p *fixture.Proc, c *http.Client, base, user, pass string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body, err := get(c, base+"/-/ready", user, pass)
		if err == nil && code == http.StatusOK {
			return
		}
		if p.Exited() {
			t.Fatalf("exporter exited before it was ready (%v):\n%s", p.Err(), p.Logs.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("exporter not ready after 20s: status %d, %v, %q\n%s", code, err, body, p.Logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// parseMetrics parses a text exposition.
func parseMetrics(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return mfs
}

// testPKI is a CA and a server certificate for 127.0.0.1 made at test time.
type testPKI struct {
	caPool   *x509.CertPool
	certFile string
	keyFile  string
}

// newTestPKI makes an ECDSA P-256 CA and a server certificate it signs for
// 127.0.0.1 and localhost, valid for an hour, and writes the server's
// certificate and key as PEM files into dir.
func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tsh6 test CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{
		caPool:   x509.NewCertPool(),
		certFile: filepath.Join(dir, "server.crt"),
		keyFile:  filepath.Join(dir, "server.key"),
	}
	p.caPool.AddCert(caCert)
	if err := os.WriteFile(p.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// randomSecret returns n random bytes as hex.
func randomSecret(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestAccessTLSBasicAuth runs the real binary with an exporter-toolkit web
// config holding a server certificate from a CA made at test time and one
// basic-auth user, and checks it from real TLS clients: the right password
// gets the metrics, a wrong or missing one gets 401, plain HTTP gets no
// metrics, and a client that does not trust the CA fails verification.
func TestAccessTLSBasicAuth(t *testing.T) {
	bin := exporterBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := fixture.NewNetnsPrefix(t, hardenNetnsPrefix)

	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	const user = "tsh6-prometheus"
	pass := randomSecret(t, 16)
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	yml := fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  %s: '%s'\n",
		pki.certFile, pki.keyFile, user, hash)
	if err := os.WriteFile(webConfig, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}

	p := startExporter(t, ctx, ns, bin, nil, "--web.listen-address="+exporterAddr, "--web.config.file="+webConfig)
	trusting := &http.Client{Timeout: 10 * time.Second, Transport: nsTransport(ns, &tls.Config{RootCAs: pki.caPool, MinVersion: tls.VersionTLS12})}
	base := "https://" + exporterAddr
	waitReady(t, p, trusting, base, user, pass)

	// The right password gets the metrics, over a verified TLS connection.
	code, body, err := get(trusting, base+"/metrics", user, pass)
	if err != nil || code != http.StatusOK {
		t.Fatalf("HTTPS /metrics with the right password: status %d, %v", code, err)
	}
	if mf := parseMetrics(t, body)["tcpstate_sockets"]; mf == nil || len(mf.GetMetric()) == 0 {
		t.Errorf("HTTPS /metrics with the right password has no tcpstate_sockets:\n%.2000s", body)
	}

	// A wrong password, an unknown user and no credentials all get 401
	// and no metrics, on every endpoint.
	for _, tc := range []struct{ path, user, pass string }{
		{"/metrics", user, pass + "x"},
		{"/metrics", user, ""},
		{"/metrics", "tsh6-intruder", pass},
		{"/metrics", "", ""},
		{"/-/ready", user, "wrong"},
		{"/", "", ""},
	} {
		code, body, err := get(trusting, base+tc.path, tc.user, tc.pass)
		if err != nil {
			t.Errorf("GET %s as %q: %v", tc.path, tc.user, err)
			continue
		}
		if code != http.StatusUnauthorized {
			t.Errorf("GET %s as %q with a wrong password: status %d, want 401", tc.path, tc.user, code)
		}
		if bytes.Contains(body, []byte("tcpstate_")) {
			t.Errorf("GET %s as %q with a wrong password returned metrics", tc.path, tc.user)
		}
	}

	// Plain HTTP on the TLS port is refused: Go's TLS server answers a
	// cleartext request with 400 and never runs the handler.
	plain := &http.Client{Timeout: 10 * time.Second, Transport: nsTransport(ns, nil)}
	code, body, err = get(plain, "http://"+exporterAddr+"/metrics", user, pass)
	switch {
	case err != nil:
		t.Logf("plain HTTP: %v", err)
	case code == http.StatusOK || bytes.Contains(body, []byte("tcpstate_")):
		t.Errorf("plain HTTP /metrics succeeded (status %d)", code)
	default:
		t.Logf("plain HTTP: status %d %q", code, strings.TrimSpace(string(body)))
	}

	// Clients that do not trust the test CA (the system roots, or another
	// CA) fail verification and never send the credentials.
	other := newTestPKI(t, t.TempDir())
	for name, conf := range map[string]*tls.Config{
		"system roots": {MinVersion: tls.VersionTLS12},
		"another CA":   {RootCAs: other.caPool, MinVersion: tls.VersionTLS12},
	} {
		c := &http.Client{Timeout: 10 * time.Second, Transport: nsTransport(ns, conf)}
		_, _, err := get(c, base+"/metrics", user, pass)
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Errorf("client trusting %s: got %v, want an unknown-authority verification error", name, err)
		}
	}

	// The exporter is still serving after the failed handshakes.
	if code, _, err := get(trusting, base+"/-/healthy", user, pass); err != nil || code != http.StatusOK {
		t.Errorf("after the refused clients: /-/healthy status %d, %v", code, err)
	}
}

// TestAccessBadWebConfig checks that a web config the exporter cannot use
// makes the binary exit non-zero at once with one error line that says
// what is wrong.
func TestAccessBadWebConfig(t *testing.T) {
	bin := exporterBinary(t)
	ns := fixture.NewNetnsPrefix(t, hardenNetnsPrefix)
	dir := t.TempDir()
	missingCert := filepath.Join(dir, "missing-cert.yml")
	if err := os.WriteFile(missingCert, []byte("tls_server_config:\n  cert_file: "+filepath.Join(dir, "no-such.crt")+"\n  key_file: "+filepath.Join(dir, "no-such.key")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testdata, err := filepath.Abs(filepath.Join("testdata", "web"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file string
		cause      string // text the error line must carry
	}{
		{"missing file", filepath.Join(dir, "no-such-web.yml"), "no such file"},
		{"invalid YAML", filepath.Join(testdata, "invalid-yaml.yml"), "yaml"},
		{"unknown field", filepath.Join(testdata, "unknown-field.yml"), "field"},
		{"cert path missing", missingCert, "no-such.crt"},
		{"key without cert", filepath.Join(testdata, "key-without-cert.yml"), "cert"},
		{"bad password hash", filepath.Join(testdata, "bad-password-hash.yml"), "hash"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p := startExporter(t, ctx, ns, bin, nil, "--web.listen-address="+exporterAddr, "--web.config.file="+tc.file)
			select {
			case <-p.Done():
			case <-time.After(15 * time.Second):
				t.Fatalf("still running 15s after start with a bad web config:\n%s", p.Logs.String())
			}
			var exitErr *exec.ExitError
			if !errors.As(p.Err(), &exitErr) || exitErr.ExitCode() <= 0 {
				t.Fatalf("exit: %v, want a non-zero exit code\n%s", p.Err(), p.Logs.String())
			}
			var errLines []string
			for _, l := range strings.Split(strings.TrimSpace(p.Logs.String()), "\n") {
				if strings.Contains(l, "level=ERROR") || strings.Contains(l, "error:") {
					errLines = append(errLines, l)
				}
			}
			if len(errLines) != 1 {
				t.Fatalf("exit code %d with %d error lines, want one:\n%s", exitErr.ExitCode(), len(errLines), p.Logs.String())
			}
			line := errLines[0]
			if !strings.Contains(line, tc.cause) {
				t.Errorf("error line %q does not carry the cause (%q)", line, tc.cause)
			}
			t.Logf("exit %d: %s", exitErr.ExitCode(), line)
			// The line names the config at fault, and the exit code is 2:
			// main.go validates --web.config.file before serving.
			if !strings.Contains(line, "web.config.file") || !strings.Contains(line, tc.file) {
				t.Errorf("error line %q does not name --web.config.file and %s", line, tc.file)
			}
			if exitErr.ExitCode() != 2 {
				t.Errorf("exit code %d, want 2 for a bad flag value", exitErr.ExitCode())
			}
		})
	}
}

// procStatus reads the "Key: value" lines of /proc/PID/status.
func procStatus(pid int) (map[string]string, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out, sc.Err()
}

// TestUnprivilegedHostMode runs the exporter as nobody with every
// capability dropped (setpriv) inside a namespace holding known sockets:
// reading one's own namespace through sock_diag needs no privilege, so the
// counts must be exact.
func TestUnprivilegedHostMode(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) is not installed: " + err.Error())
	}
	bin := exporterBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := fixture.NewNetnsPrefix(t, hardenNetnsPrefix)

	var want [2]fixture.Counts // by family: IPv4, IPv6
	build := func(s *fixture.Set, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		i := 0
		if s.Family() == fixture.IPv6 {
			i = 1
		}
		want[i] = want[i].Add(s.ExpectedIn(ns))
	}
	build(ns.Listen(ctx, fixture.IPv4, 3))
	build(ns.Established(ctx, fixture.IPv4, 7))
	build(ns.CloseWait(ctx, fixture.IPv4, 4))
	build(ns.TimeWait(ctx, fixture.IPv6, 5))
	build(ns.Established(ctx, fixture.IPv6, 6))
	build(ns.SynSent(ctx, fixture.IPv6, 2))

	wrapper := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"}
	p := startExporter(t, ctx, ns, bin, wrapper, "--web.listen-address="+exporterAddr)
	// One kept-alive connection: its two ends are known ESTABLISHED
	// sockets in the namespace.
	tr := nsTransport(ns, nil)
	tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost = 1, 1
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	base := "http://" + exporterAddr
	waitReady(t, p, client, base, "", "")

	st, err := procStatus(p.Cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	comm, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.Cmd.Process.Pid), "comm"))
	if got := strings.TrimSpace(string(comm)); !strings.HasPrefix("tcpstate-exporter", got) || got == "" {
		t.Fatalf("process %d is %q, not the exporter", p.Cmd.Process.Pid, got)
	}
	for key, want := range map[string]string{
		"Uid":        "65534\t65534\t65534\t65534",
		"Gid":        "65534\t65534\t65534\t65534",
		"Groups":     "",
		"CapInh":     "0000000000000000",
		"CapPrm":     "0000000000000000",
		"CapEff":     "0000000000000000",
		"CapBnd":     "0000000000000000",
		"CapAmb":     "0000000000000000",
		"NoNewPrivs": "1",
	} {
		if st[key] != want {
			t.Errorf("/proc/%d/status %s: %q, want %q", p.Cmd.Process.Pid, key, st[key], want)
		}
	}
	t.Logf("exporter pid %d: Uid %q CapEff %s CapBnd %s NoNewPrivs %s", p.Cmd.Process.Pid, st["Uid"], st["CapEff"], st["CapBnd"], st["NoNewPrivs"])

	// The exporter's listener and the kept-alive scrape connection.
	want[0][fixture.Listen]++
	want[0][fixture.Established] += 2
	if _, _, err := get(client, base+"/metrics", "", ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // two samples after the connection opened
	code, body, err := get(client, base+"/metrics", "", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics: status %d, %v", code, err)
	}
	mfs := parseMetrics(t, body)
	got := map[string]int{}
	for _, m := range mfs["tcpstate_sockets"].GetMetric() {
		var fam, state string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "family":
				fam = l.GetValue()
			case "state":
				state = l.GetValue()
			}
		}
		got[fam+"/"+state] = int(m.GetGauge().GetValue())
	}
	if len(got) != 22 {
		t.Errorf("tcpstate_sockets has %d series, want 22", len(got))
	}
	for i, fam := range []fixture.Family{fixture.IPv4, fixture.IPv6} {
		for _, s := range fixture.States() {
			key := fam.String() + "/" + s.String()
			if got[key] != want[i][s] {
				t.Errorf("%s: unprivileged exporter says %d, fixture made %d", key, got[key], want[i][s])
			}
		}
	}
	if mf := mfs["tcpstate_dump_errors_total"]; mf != nil {
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				t.Errorf("tcpstate_dump_errors_total%v = %v while unprivileged", m.GetLabel(), v)
			}
		}
	}
	t.Logf("unprivileged counts exact: IPv4 %v; IPv6 %v", want[0], want[1])
}
