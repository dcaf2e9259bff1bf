package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/coreos/go-systemd/v22/activation"
	"github.com/mdlayher/vsock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/sys/unix"
)

// webLimits holds the HTTP server's timeouts and connection bound.
type webLimits struct {
	readTimeout  time.Duration
	writeTimeout time.Duration
	idleTimeout  time.Duration
	maxConns     int
}

// addWebLimitFlags declares the HTTP timeout and connection flags on app.
func addWebLimitFlags(app *kingpin.Application, c *webLimits) {
	app.Flag("web.read-timeout", "Time to read a whole request, headers and body (requests have no body; a client that sends one is answered and disconnected).").Default("10s").DurationVar(&c.readTimeout)
	app.Flag("web.write-timeout", "Time to write a response, from the end of the request headers.").Default("1m").DurationVar(&c.writeTimeout)
	app.Flag("web.idle-timeout", "Time a keep-alive connection may wait for its next request before it is closed.").Default("2m").DurationVar(&c.idleTimeout)
	app.Flag("web.max-connections", "Connections served at once per listen address; when they are all open, the one idle the longest is closed for a new one, and if none is idle the new one waits. Lowered to fit the open-file limit.").Default("64").IntVar(&c.maxConns)
}

// validate checks the HTTP limit flags.
func (c *webLimits) validate() error {
	switch {
	case c.readTimeout <= 0:
		return fmt.Errorf("--web.read-timeout=%v: must be positive", c.readTimeout)
	case c.writeTimeout <= 0:
		return fmt.Errorf("--web.write-timeout=%v: must be positive", c.writeTimeout)
	case c.idleTimeout <= 0:
		return fmt.Errorf("--web.idle-timeout=%v: must be positive", c.idleTimeout)
	case c.maxConns < 1:
		return fmt.Errorf("--web.max-connections=%d: must be at least 1", c.maxConns)
	}
	return nil
}

const (
	// maxHeaderWait bounds the wait for a request's headers.
	maxHeaderWait = 10 * time.Second
	// shutdownGrace bounds how long a SIGTERM waits for requests in flight.
	shutdownGrace = 2 * time.Second
	// fdReserve is the number of file descriptors kept free of HTTP
	// connections under the open-file limit beyond those open when the
	// server starts (the eBPF maps and programs, the listeners, the
	// runtime's): the net files a sampler holds once it has sampled,
	// /proc reads, netlink sockets dialled later.
	fdReserve = 16
	// newConnStale is how long a connection may stay without a complete
	// request before it counts as idle when room is needed.
	newConnStale = 2 * time.Second
	// authConcurrency is the number of requests with credentials checked
	// at once; exporter-toolkit runs one bcrypt comparison at a time, so
	// more would only queue on its lock.
	authConcurrency = 2
	// authPerSource is the number of requests with unknown credentials
	// one client address may have checked (or waiting) at once.
	authPerSource = 1
	// authWait is how long a request with unknown credentials waits for
	// a check before it is answered 429.
	authWait = 200 * time.Millisecond
	// knownCredentials bounds the remembered accepted credentials.
	knownCredentials = 16
)

// connBudget returns the connections each of n listeners may hold under
// an open-file limit of nofile with open descriptors already in use: want,
// or less when want connections on every listener plus open and fdReserve
// would not fit.
func connBudget(want, n int, nofile uint64, open int) int {
	if n < 1 || nofile == 0 || nofile >= 1<<30 {
		return want
	}
	avail := (int(nofile) - open - fdReserve) / n
	return max(1, min(want, avail))
}

// ownOpenFDs returns the number of descriptors the process has open, or 0
// if /proc/self/fd cannot be read.
func ownOpenFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return max(len(ents)-1, 0) // less the one reading the directory
}

// nofileLimit returns the soft RLIMIT_NOFILE (the Go runtime raises it to
// the hard limit at start), or 0 if unknown.
func nofileLimit() uint64 {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return r.Cur
}

// webMetrics counts what the HTTP hardening refuses or closes.
type webMetrics struct {
	throttled prometheus.Counter
	evicted   prometheus.Counter
	conns     prometheus.Gauge
	maxConns  prometheus.Gauge
}

func newWebMetrics() *webMetrics {
	return &webMetrics{
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tcpstate_http_auth_throttled_total",
			Help: "Requests with credentials not yet seen to pass, answered 429 without a password check because other checks from the same address, or from all, held every place.",
		}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tcpstate_http_connections_evicted_total",
			Help: "Idle keep-alive (or request-less) HTTP connections closed to make room for a new one under --web.max-connections.",
		}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tcpstate_http_connections",
			Help: "HTTP connections open, over all listen addresses.",
		}),
		maxConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tcpstate_http_connections_max",
			Help: "Connections served at once per listen address (--web.max-connections, lowered to fit the open-file limit).",
		}),
	}
}

func (m *webMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.throttled, m.evicted, m.conns, m.maxConns}
}

// webServer is the HTTP side: one http.Server per listen address, each
// with a bounded listener, timeouts, the structured logger, and
// exporter-toolkit's TLS and basic auth behind a bound on password checks.
type webServer struct {
	logger  *slog.Logger
	metrics *webMetrics
	servers []*http.Server
	limits  []*connLimiter
	// namespaceFDBudget is what the open-file limit leaves, once the
	// server is set up, beside the descriptors open then, every HTTP
	// connection the listeners may hold, and fdReserve: the descriptors
	// the namespaces sampled with --netns=all may hold in all
	// (netns.ManagerOptions.FDBudget). math.MaxInt when the limit is
	// unknown or too large to matter.
	namespaceFDBudget int
}

// namespaceFDBudget returns the descriptors left for sampled namespaces
// under an open-file limit of nofile with open descriptors in use and
// conns HTTP connections to keep room for.
func namespaceFDBudget(nofile uint64, open, conns int) int {
	if nofile == 0 || nofile >= 1<<30 {
		return math.MaxInt
	}
	return max(int(nofile)-open-conns-fdReserve, 0)
}

// listen opens the listen addresses (or the systemd sockets) as
// web.ListenAndServe would.
func listen(flags *web.FlagConfig, logger *slog.Logger) ([]net.Listener, error) {
	if flags.WebSystemdSocket != nil && *flags.WebSystemdSocket {
		logger.Info("Listening on systemd activated listeners instead of port listeners.")
		ls, err := activation.Listeners()
		if err != nil {
			return nil, err
		}
		if len(ls) == 0 {
			return nil, errors.New("no socket activation file descriptors found")
		}
		return ls, nil
	}
	if flags.WebListenAddresses == nil || len(*flags.WebListenAddresses) == 0 {
		return nil, web.ErrNoListeners
	}
	var ls []net.Listener
	for _, addr := range *flags.WebListenAddresses {
		var l net.Listener
		var err error
		if rest, ok := strings.CutPrefix(addr, "vsock://"); ok {
			if _, p, serr := net.SplitHostPort(rest); serr != nil {
				err = serr
			} else if port, perr := strconv.ParseUint(p, 10, 32); perr != nil {
				err = fmt.Errorf("vsock port %q: %w", p, perr)
			} else {
				l, err = vsock.Listen(uint32(port), nil)
			}
		} else {
			l, err = net.Listen("tcp", addr)
		}
		if err != nil {
			for _, o := range ls {
				o.Close()
			}
			return nil, fmt.Errorf("--web.listen-address=%s: %w", addr, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// errProbe ends the Serve call that only reads exporter-toolkit's setup.
var errProbe = errors.New("probe listener: no connections")

// probeListener never accepts: web.Serve over it sets up a server (TLS
// config, authentication handler) and returns at once.
type probeListener struct{ addr net.Addr }

func (p probeListener) Accept() (net.Conn, error) { return nil, errProbe }
func (p probeListener) Close() error              { return nil }
func (p probeListener) Addr() net.Addr            { return p.addr }

// toolkitSetup returns what exporter-toolkit's web.Serve makes of the web
// config for a listener at addr: the handler (h behind basic auth when the
// config has users), the TLS config (certificates and config reread at
// every handshake), and the HTTP/2 choice. It runs web.Serve over a
// listener that never accepts, so the toolkit's own code decides and logs
// ("TLS is enabled") and nothing of it is copied here; the real server
// then puts its bounds in front.
func toolkitSetup(addr net.Addr, h http.Handler, flags *web.FlagConfig, logger *slog.Logger) (*http.Server, error) {
	probe := &http.Server{Handler: h}
	err := web.Serve(probeListener{addr}, probe, flags, logger)
	if !errors.Is(err, errProbe) {
		return nil, err
	}
	return probe, nil
}

// newWebServer sets up one server per listener; serve starts them.
func newWebServer(ls []net.Listener, h http.Handler, cfg *config, logger *slog.Logger, m *webMetrics) (*webServer, error) {
	ws := &webServer{logger: logger, metrics: m}
	lim := cfg.webLimits
	open := ownOpenFDs()
	maxConns := connBudget(lim.maxConns, len(ls), nofileLimit(), open)
	if maxConns < lim.maxConns {
		logger.Warn("lowered --web.max-connections to fit the open-file limit", "max_connections", maxConns, "flag", lim.maxConns, "nofile", nofileLimit(), "open_fds", open, "listeners", len(ls))
	}
	m.maxConns.Set(float64(maxConns))
	ws.namespaceFDBudget = namespaceFDBudget(nofileLimit(), open, maxConns*len(ls))
	errorLog := slog.NewLogLogger(logger.With("component", "http").Handler(), slog.LevelWarn)
	auth := &authLimiter{slots: make(chan struct{}, authConcurrency), wait: authWait, known: map[[32]byte]time.Time{}, perSource: map[string]int{}, throttled: m.throttled}
	for _, l := range ls {
		probe, err := toolkitSetup(l.Addr(), markAuthenticated(h), cfg.web, logger)
		if err != nil {
			return nil, err
		}
		cl := newConnLimiter(l, maxConns, m)
		var tlsConf *tls.Config
		if probe.TLSConfig != nil && probe.TLSConfig.GetConfigForClient != nil {
			// exporter-toolkit's TLS: it sets GetConfigForClient to reread
			// the config at each handshake. (http.Server.Serve may leave
			// an empty TLSConfig for HTTP/2 even without TLS.)
			tlsConf = probe.TLSConfig
		}
		srv := &http.Server{
			Handler:           onlyGetHead(auth.wrap(probe.Handler)),
			TLSConfig:         tlsConf,
			ReadHeaderTimeout: min(maxHeaderWait, lim.readTimeout),
			ReadTimeout:       lim.readTimeout,
			WriteTimeout:      lim.writeTimeout,
			IdleTimeout:       lim.idleTimeout,
			ErrorLog:          errorLog,
			ConnState:         cl.connState,
		}
		if tlsConf != nil && probe.TLSNextProto != nil && len(probe.TLSNextProto) == 0 {
			// The web config turned HTTP/2 off.
			srv.TLSNextProto = probe.TLSNextProto
		}
		ws.servers = append(ws.servers, srv)
		ws.limits = append(ws.limits, cl)
	}
	return ws, nil
}

// serve runs every server until Shutdown; the first error ends it.
func (ws *webServer) serve() error {
	errc := make(chan error, len(ws.servers))
	for i, srv := range ws.servers {
		go func() {
			var err error
			if srv.TLSConfig != nil {
				err = srv.ServeTLS(ws.limits[i], "", "")
			} else {
				err = srv.Serve(ws.limits[i])
			}
			errc <- err
		}()
	}
	// A listener that fails for good ends the process (the caller exits),
	// rather than leaving it up without that address.
	for range ws.servers {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	return http.ErrServerClosed
}

// shutdown stops accepting, closes connections without a request in
// flight, waits at most shutdownGrace for the others, then closes them.
func (ws *webServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	for i, srv := range ws.servers {
		wg.Go(func() {
			// http.Server.Shutdown leaves a connection that has not sent
			// a whole request open for 5 s; none of them has one in flight.
			ws.limits[i].closeWaiting()
			if err := srv.Shutdown(ctx); err != nil {
				ws.logger.Warn("HTTP shutdown: closing connections still open", "err", err)
				_ = srv.Close()
			}
		})
	}
	wg.Wait()
}

// onlyGetHead answers every method but GET and HEAD with 405 and an Allow
// header. A request that carries a body (none of the endpoints takes one)
// is answered without reading it, and its connection is closed, so that a
// slow body holds nothing.
func onlyGetHead(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			w.Header().Set("Connection", "close")
			// The server would otherwise read up to 256 KiB of the body
			// after the handler, at the client's pace.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "Method not allowed; use GET or HEAD.", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// authPassed is set by markAuthenticated when a request got through
// exporter-toolkit's authentication to the agent's handler.
type authPassed struct{ ok bool }

type authPassedKey struct{}

// markAuthenticated records, for authLimiter, that a request reached h.
func markAuthenticated(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := r.Context().Value(authPassedKey{}).(*authPassed); ok {
			p.ok = true
		}
		h.ServeHTTP(w, r)
	})
}

// authLimiter bounds the password checks that requests with credentials
// cause in exporter-toolkit (bcrypt, one at a time behind a lock, a few
// tens of milliseconds each): at most authConcurrency such requests are
// inside at once, and at most authPerSource from one client address; one
// that finds no room (at once for its address, within authWait overall)
// gets 429 and is counted. So a flood from one address holds one place
// and leaves the other to everyone else. Credentials that passed recently
// (remembered by the SHA-256 of the Authorization header, never in clear)
// skip the bound, so that a flood of wrong passwords cannot starve a
// scraper that authenticated before; exporter-toolkit still checks them
// every time.
type authLimiter struct {
	slots     chan struct{}
	wait      time.Duration
	throttled prometheus.Counter

	mu        sync.Mutex
	known     map[[32]byte]time.Time // accepted credentials -> when last accepted
	perSource map[string]int         // client address -> unknown credentials in check
}

func (a *authLimiter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred := r.Header.Get("Authorization")
		if cred == "" {
			next.ServeHTTP(w, r)
			return
		}
		key := sha256.Sum256([]byte(cred))
		if !a.isKnown(key) {
			src, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				src = r.RemoteAddr
			}
			if !a.enter(src) {
				a.reject(w)
				return
			}
			defer a.leave(src)
			t := time.NewTimer(a.wait)
			select {
			case a.slots <- struct{}{}:
				t.Stop()
				defer func() { <-a.slots }()
			case <-t.C:
				a.reject(w)
				return
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		passed := &authPassed{}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), authPassedKey{}, passed)))
		a.remember(key, passed.ok)
	})
}

// reject answers 429 and counts it.
func (a *authLimiter) reject(w http.ResponseWriter) {
	a.throttled.Inc()
	w.Header().Set("Retry-After", "1")
	http.Error(w, "Too many authentication attempts in progress.", http.StatusTooManyRequests)
}

// enter takes one of src's places, if it has one free.
func (a *authLimiter) enter(src string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.perSource[src] >= authPerSource {
		return false
	}
	a.perSource[src]++
	return true
}

func (a *authLimiter) leave(src string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.perSource[src]--; a.perSource[src] <= 0 {
		delete(a.perSource, src)
	}
}

func (a *authLimiter) isKnown(key [32]byte) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.known[key]
	return ok
}

// remember records whether credentials passed; a full table forgets the
// entry accepted the longest ago.
func (a *authLimiter) remember(key [32]byte, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !ok {
		delete(a.known, key)
		return
	}
	if _, have := a.known[key]; !have && len(a.known) >= knownCredentials {
		var oldest [32]byte
		var at time.Time
		for k, t := range a.known {
			if at.IsZero() || t.Before(at) {
				oldest, at = k, t
			}
		}
		delete(a.known, oldest)
	}
	a.known[key] = time.Now()
}

// connLimiter is a listener that keeps at most max connections open. When
// all are open, a new connection makes it close the one that has been idle
// (between keep-alive requests, or without a complete first request for
// newConnStale) the longest; if none is, the new one waits until one
// closes. http.Server's ConnState tells it which connections are idle.
type connLimiter struct {
	net.Listener
	metrics *webMetrics
	slots   chan struct{} // a token per open connection
	done    chan struct{} // closed by Close
	once    sync.Once

	mu      sync.Mutex
	state   map[*limitedConn]connInfo // open connections not in a request
	wakeup  chan struct{}             // capacity 1: a connection went idle
	waiting bool                      // Accept waits for room
}

// connInfo is a connection's idle state and since when.
type connInfo struct {
	state http.ConnState // StateNew or StateIdle
	since time.Time
}

func newConnLimiter(l net.Listener, limit int, m *webMetrics) *connLimiter {
	return &connLimiter{
		Listener: l,
		metrics:  m,
		slots:    make(chan struct{}, limit),
		done:     make(chan struct{}),
		state:    map[*limitedConn]connInfo{},
		wakeup:   make(chan struct{}, 1),
	}
}

// Accept accepts a connection, then makes room for it.
func (l *connLimiter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		select {
		case l.slots <- struct{}{}:
			return l.track(c), nil
		default:
		}
		l.mu.Lock()
		l.waiting = true
		victim := l.oldestIdleLocked(time.Now())
		l.mu.Unlock()
		if victim != nil {
			l.metrics.evicted.Inc()
			victim.Close()
		}
		select {
		case l.slots <- struct{}{}:
			return l.track(c), nil
		case <-l.wakeup: // a connection went idle: close it
		case <-time.After(newConnStale / 2): // one may have gone stale
		case <-l.done:
			c.Close()
			return nil, net.ErrClosed
		}
	}
}

// track wraps a connection that holds a slot.
func (l *connLimiter) track(c net.Conn) *limitedConn {
	lc := &limitedConn{Conn: c, l: l}
	l.mu.Lock()
	l.waiting = false
	l.state[lc] = connInfo{http.StateNew, time.Now()}
	l.mu.Unlock()
	l.metrics.conns.Inc()
	return lc
}

// oldestIdleLocked returns the connection idle the longest, or nil.
func (l *connLimiter) oldestIdleLocked(now time.Time) *limitedConn {
	var victim *limitedConn
	var at time.Time
	for c, in := range l.state {
		if in.state == http.StateNew && now.Sub(in.since) < newConnStale {
			continue
		}
		if victim == nil || in.since.Before(at) {
			victim, at = c, in.since
		}
	}
	return victim
}

// Close stops accepting.
func (l *connLimiter) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// closeWaiting closes the connections without a request in flight.
func (l *connLimiter) closeWaiting() {
	l.mu.Lock()
	var cs []*limitedConn
	for c := range l.state {
		cs = append(cs, c)
	}
	l.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// connState follows http.Server's view of each connection.
func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.closed {
		return
	}
	switch st {
	case http.StateIdle:
		l.state[lc] = connInfo{st, time.Now()}
		if l.waiting {
			select {
			case l.wakeup <- struct{}{}:
			default:
			}
		}
	case http.StateNew:
		// Recorded by Accept.
	default:
		delete(l.state, lc)
	}
}

// limitedConn returns its slot when closed.
type limitedConn struct {
	net.Conn
	l      *connLimiter
	once   sync.Once
	closed bool // under l.mu
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.closed = true
		delete(c.l.state, c)
		c.l.mu.Unlock()
		<-c.l.slots
		c.l.metrics.conns.Dec()
	})
	return err
}
