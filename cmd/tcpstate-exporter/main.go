// Command tcpstate-exporter watches every TCP socket of a Linux node through
// sock_diag and serves Prometheus metrics about them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	webflag "github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/tcpstate/tcpstate-exporter/diag"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config holds the validated flags.
type config struct {
	telemetryPath string
	interval      time.Duration
	budget        float64
	window        time.Duration
	netns         string
	netnsRefresh  time.Duration
	kubeconfig    string
	procRoot      string
	listenersMax  int
	destsMax      int
	netnsMax      int
	maxRequests   int
	method        string
	web           *web.FlagConfig
	webLimits     webLimits
	log           *promslog.Config
	alerts        alertsConfig
	detect        detectFlags
	halfOpen      halfOpenFlags
	snapshot      snapshotConfig
	events        string
	eventsMax     int
	eventsLifeMax int
}

// usageError marks a bad flag or argument: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func parseFlags(args []string, stdout, stderr io.Writer) (*config, string, error) {
	cfg := &config{log: &promslog.Config{}}
	app := kingpin.New("tcpstate-exporter", "Watches every TCP socket on this node through sock_diag and serves Prometheus metrics and alerts.")
	app.UsageWriter(stdout).ErrorWriter(stderr)
	app.HelpFlag.Short('h')
	stampVersion()
	app.Version(version.Print("tcpstate-exporter"))
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&cfg.telemetryPath)
	app.Flag("sample.interval", "Interval of the cheap dumps of rare states (all but established and time_wait), and the shortest interval between full dumps.").Default("1s").DurationVar(&cfg.interval)
	app.Flag("sample.cpu-budget", "Fraction of one CPU core the sampler's dumps may use on average; full dumps are spaced out to fit.").Default("0.05").Float64Var(&cfg.budget)
	app.Flag("sample.window", "Trailing window over which tcpstate_sockets_max keeps the maximum.").Default("1m").DurationVar(&cfg.window)
	app.Flag("netns", "Network namespaces to watch: host (this process's own namespace; no privilege needed) or all (every namespace on the node, labelled by pod where a pod owns it; needs CAP_SYS_ADMIN and CAP_SYS_PTRACE, and the node's PID namespace).").Default("host").StringVar(&cfg.netns)
	app.Flag("netns.refresh", "With --netns=all: time between discoveries of the node's network namespaces.").Default("30s").DurationVar(&cfg.netnsRefresh)
	app.Flag("kubeconfig", "With --netns=all: kubeconfig for the pod watch outside a cluster; empty uses the in-cluster service account (pods of $NODE_NAME).").Default("").StringVar(&cfg.kubeconfig)
	app.Flag("path.procfs", "Where the node's procfs is mounted: kernel counters, sysctls, CLOSE_WAIT owners, and with --netns=all namespaces and pods are read there (the process_* metrics describe the exporter itself and read its own /proc).").Default("/proc").StringVar(&cfg.procRoot)
	app.Flag("collector.listeners.max", "Listening addresses reported per namespace; the rest fold into address=\"other\".").Default("1000").IntVar(&cfg.listenersMax)
	app.Flag("collector.destinations.max", "Destinations (local address, remote address and port of outbound sockets) reported per namespace, most used first; the rest fold into addresses \"other\".").Default("50").IntVar(&cfg.destsMax)
	app.Flag("collector.namespaces.max", "With --netns=all: namespaces reported one by one (the agent's own and the largest by sockets); the rest fold into netns=\"other\".").Default("500").IntVar(&cfg.netnsMax)
	app.Flag("diag.method", "sock_diag request: auto (one legacy walk for both families), legacy, or v2 (one request per family).").Default("auto").EnumVar(&cfg.method, "auto", "legacy", "v2")
	app.Flag("web.max-requests", "Maximum number of concurrent /metrics requests; 0 means no limit (a scrape only reads the latest sample).").Default("0").IntVar(&cfg.maxRequests)
	cfg.web = webflag.AddFlags(app, ":9874")
	addWebLimitFlags(app, &cfg.webLimits)
	promslogflag.AddFlags(app, cfg.log)
	addAlertFlags(app, &cfg.alerts)
	addDetectFlags(app, &cfg.detect)
	addEventsFlags(app, cfg)
	addHalfOpenFlags(app, &cfg.halfOpen, &cfg.detect.cfg)
	app.Command("serve", "Sample this node and serve metrics over HTTP (the default).").Default()
	addSnapshotCommand(app, &cfg.snapshot)
	cmd, err := app.Parse(args)
	if err != nil {
		return nil, "", &usageError{nameFlag(args, err)}
	}
	if err := cfg.validate(); err != nil {
		return nil, "", &usageError{err}
	}
	if err := cfg.validateFor(cmd); err != nil {
		return nil, "", &usageError{err}
	}
	return cfg, cmd, nil
}

// nameFlag adds the flag's name to a kingpin value error that lacks it
// ("time: invalid duration", "enum value must be one of"), by finding the
// argument whose value the message quotes.
func nameFlag(args []string, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "--") || strings.Contains(msg, "flag") {
		return err
	}
	for i, a := range args {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, val, ok := strings.Cut(a, "=")
		if !ok && i+1 < len(args) {
			val = args[i+1]
		}
		if val != "" && (strings.Contains(msg, "\""+val+"\"") || strings.Contains(msg, "'"+val+"'")) {
			return fmt.Errorf("%s=%s: %w", name, val, err)
		}
	}
	return err
}

func (c *config) validate() error {
	switch {
	case c.interval < 10*time.Millisecond:
		return fmt.Errorf("--sample.interval=%v: must be at least 10ms", c.interval)
	case !(c.budget > 0 && c.budget <= 1):
		return fmt.Errorf("--sample.cpu-budget=%v: must be a fraction of one core in (0, 1]", c.budget)
	case c.window < c.interval:
		return fmt.Errorf("--sample.window=%v: must be at least --sample.interval (%v)", c.window, c.interval)
	case c.netns != "host" && c.netns != "all":
		return fmt.Errorf("--netns=%q: must be host or all", c.netns)
	case c.netnsRefresh < time.Second:
		return fmt.Errorf("--netns.refresh=%v: must be at least 1s", c.netnsRefresh)
	case c.procRoot == "":
		return fmt.Errorf("--path.procfs: must not be empty")
	}
	if c.kubeconfig != "" {
		if _, err := os.Stat(c.kubeconfig); err != nil {
			return fmt.Errorf("--kubeconfig=%s: %w", c.kubeconfig, errors.Unwrap(err))
		}
	}
	if fi, err := os.Stat(c.procRoot); err != nil || !fi.IsDir() {
		return fmt.Errorf("--path.procfs=%s: not a readable directory", c.procRoot)
	}
	switch {
	case c.listenersMax < 1:
		return fmt.Errorf("--collector.listeners.max=%d: must be at least 1", c.listenersMax)
	case c.destsMax < 1:
		return fmt.Errorf("--collector.destinations.max=%d: must be at least 1", c.destsMax)
	case c.netnsMax < 1:
		return fmt.Errorf("--collector.namespaces.max=%d: must be at least 1", c.netnsMax)
	case len(c.telemetryPath) == 0 || c.telemetryPath[0] != '/':
		return fmt.Errorf("--web.telemetry-path=%q: must start with /", c.telemetryPath)
	case c.maxRequests < 0:
		return fmt.Errorf("--web.max-requests=%d: must be 0 (no limit) or more", c.maxRequests)
	case c.eventsMax < 1:
		return fmt.Errorf("--collector.events.max-series=%d: must be at least 1", c.eventsMax)
	case c.eventsLifeMax < 1:
		return fmt.Errorf("--collector.events.max-lifetime-series=%d: must be at least 1", c.eventsLifeMax)
	}
	if err := c.webLimits.validate(); err != nil {
		return err
	}
	if f := c.webConfigFile(); f != "" {
		// Checked before serving: exporter-toolkit would otherwise report
		// it only once listening, without naming the file.
		if err := web.Validate(f); err != nil {
			// YAML errors span lines; keep the message on one.
			return fmt.Errorf("--web.config.file=%s: %s", f, strings.Join(strings.Fields(err.Error()), " "))
		}
	}
	if err := c.alerts.validate(); err != nil {
		return err
	}
	if err := c.halfOpen.validate(&c.detect.cfg); err != nil {
		return err
	}
	if err := c.detect.validate(); err != nil {
		return err
	}
	return c.snapshot.validate()
}

// validateFor rejects the path flags the command would ignore: every
// path-like flag is honoured everywhere or refused. --path.procfs is used
// by every command and mode.
func (c *config) validateFor(cmd string) error {
	switch {
	case c.kubeconfig != "" && cmd == "snapshot":
		return fmt.Errorf("--kubeconfig=%s: the snapshot command attributes no pods; drop the flag", c.kubeconfig)
	case c.kubeconfig != "" && c.netns != "all":
		return fmt.Errorf("--kubeconfig=%s: used only with --netns=all (pod attribution); drop it or add --netns=all", c.kubeconfig)
	case c.webConfigFile() != "" && cmd == "snapshot":
		return fmt.Errorf("--web.config.file=%s: the snapshot command serves nothing; drop the flag", c.webConfigFile())
	}
	return nil
}

// webConfigFile returns the --web.config.file path, or "" when unset.
func (c *config) webConfigFile() string {
	if c.web == nil || c.web.WebConfigFile == nil {
		return ""
	}
	return *c.web.WebConfigFile
}

func (c *config) diagMethod() diag.Method {
	switch c.method {
	case "legacy":
		return diag.MethodLegacy
	case "v2":
		return diag.MethodV2
	}
	return diag.MethodAuto
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, cmd, err := parseFlags(args, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tcpstate-exporter: error: %v\n", err)
		return 2
	}
	if cmd == "snapshot" {
		return runSnapshot(cfg, stdout, stderr)
	}
	cfg.log.Writer = stderr
	logger := promslog.New(cfg.log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP would end the process; it rechecks the web config instead.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	a, err := newAgent(cfg, logger, samplerFindings)
	if err != nil {
		logger.Error("setting up", "err", err)
		return 1
	}
	listeners, err := listen(cfg.web, logger)
	if err != nil {
		logger.Error("HTTP listen", "err", err)
		return 1
	}
	ws, err := newWebServer(listeners, a.handler(), cfg, logger, a.web)
	if err != nil {
		for _, l := range listeners {
			l.Close()
		}
		logger.Error("HTTP server setup", "err", err)
		return 1
	}
	a.nsFDBudget = ws.namespaceFDBudget
	go a.run(ctx)
	errc := make(chan error, 1)
	go func() { errc <- ws.serve() }()
	logger.Info("starting tcpstate-exporter", "version", version.Info(), "netns", cfg.netns, "interval", cfg.interval, "cpu_budget", cfg.budget)

	for {
		select {
		case err := <-errc:
			logger.Error("HTTP server failed", "err", err)
			return 1
		case <-hup:
			reloadWebConfig(cfg, logger)
			continue
		case <-ctx.Done():
		}
		break
	}
	ws.shutdown()
	logger.Info("stopped")
	return 0
}

// reloadWebConfig answers SIGHUP. exporter-toolkit rereads the web config
// file for every request (users, headers) and every TLS handshake
// (certificates, TLS settings), so a changed file already applies; the
// signal checks it and says so in one line. Whether TLS is on, HTTP/2 and
// the rate limit are fixed at start.
func reloadWebConfig(cfg *config, logger *slog.Logger) {
	f := cfg.webConfigFile()
	if f == "" {
		logger.Info("SIGHUP: nothing to reload (no --web.config.file)")
		return
	}
	if err := web.Validate(f); err != nil {
		logger.Error("SIGHUP: web config is invalid; requests and TLS handshakes fail until it is fixed", "file", f, "err", strings.Join(strings.Fields(err.Error()), " "))
		return
	}
	logger.Info("SIGHUP: web config is valid; it is reread at every request and TLS handshake", "file", f)
}
