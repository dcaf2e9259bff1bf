package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PostableAlert is one alert as Alertmanager's v2 API takes it
// (POST /api/v2/alerts takes a JSON array of them).
type PostableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Defaults of NotifierOptions.
const (
	DefaultNotifyTimeout = 10 * time.Second
	DefaultQueueCapacity = 10000
	DefaultBatchSize     = 256
)

// NotifierOptions configure a Notifier.
type NotifierOptions struct {
	// URLs are Alertmanager base URLs (http or https, with an optional path
	// prefix); alerts are posted to <url>/api/v2/alerts. Credentials in a
	// URL are sent as basic auth and redacted in metrics and logs.
	URLs []string
	// ExternalLabels are added to every alert's labels, except where the
	// alert already has the label (Prometheus's external_labels).
	ExternalLabels map[string]string
	// Timeout bounds each POST. Default DefaultNotifyTimeout.
	Timeout time.Duration
	// QueueCapacity bounds the alerts waiting per Alertmanager; when full,
	// the oldest are dropped. Default DefaultQueueCapacity.
	QueueCapacity int
	// BatchSize is the most alerts per POST. Default DefaultBatchSize.
	BatchSize int
	// Client sends the requests; default a client with no overall timeout
	// (each request has Timeout).
	Client *http.Client
	// Logger receives send failures; default slog.Default().
	Logger *slog.Logger
}

// Notifier pushes alerts to Alertmanagers. Each Alertmanager has its own
// bounded queue and sender goroutine, so a slow one does not hold up the
// others. A failed POST is not retried: the Engine resends firing and
// resolved alerts every resend delay, as Prometheus does.
type Notifier struct {
	opts NotifierOptions
	ams  []*amQueue

	sent, errs, dropped *prometheus.CounterVec
	queueLen            *prometheus.GaugeVec
	queueCap            prometheus.Gauge
	latency             *prometheus.SummaryVec
}

// amQueue is one Alertmanager's queue.
type amQueue struct {
	endpoint string // full URL of /api/v2/alerts
	label    string // redacted base URL, for metrics and logs

	mu    sync.Mutex
	queue []PostableAlert
	index map[string]int // alert identity (labelsKey) -> position in queue
	more  chan struct{}  // capacity 1: signals queued alerts
}

// NewNotifier checks the URLs and returns a Notifier; call Run to start
// sending.
func NewNotifier(opts NotifierOptions) (*Notifier, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultNotifyTimeout
	}
	if opts.QueueCapacity <= 0 {
		opts.QueueCapacity = DefaultQueueCapacity
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.ExternalLabels = cleanLabels(opts.ExternalLabels)
	n := &Notifier{
		opts: opts,
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpstate_alertmanager_notifications_total",
			Help: "Alerts posted to an Alertmanager (successfully or not).",
		}, []string{"url"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpstate_alertmanager_notifications_errors_total",
			Help: "Alerts in posts to an Alertmanager that failed (network error, timeout or non-2xx answer).",
		}, []string{"url"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpstate_alertmanager_notifications_dropped_total",
			Help: "Alerts discarded without being posted because an Alertmanager's queue was full.",
		}, []string{"url"}),
		queueLen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tcpstate_alertmanager_queue_length",
			Help: "Alerts waiting to be posted to an Alertmanager.",
		}, []string{"url"}),
		queueCap: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tcpstate_alertmanager_queue_capacity",
			Help: "Capacity of each Alertmanager's queue.",
		}),
		latency: prometheus.NewSummaryVec(prometheus.SummaryOpts{
			Name: "tcpstate_alertmanager_latency_seconds",
			Help: "Time taken by posts to an Alertmanager.",
		}, []string{"url"}),
	}
	n.queueCap.Set(float64(opts.QueueCapacity))
	seen := map[string]bool{}
	for _, raw := range opts.URLs {
		u, err := parseAlertmanagerURL(raw)
		if err != nil {
			return nil, err
		}
		ep := u.JoinPath("api", "v2", "alerts")
		if seen[ep.String()] {
			continue
		}
		seen[ep.String()] = true
		q := &amQueue{endpoint: ep.String(), label: u.Redacted(), index: map[string]int{}, more: make(chan struct{}, 1)}
		n.ams = append(n.ams, q)
		// Create the series up front, so that rate() sees the first error.
		n.sent.WithLabelValues(q.label)
		n.errs.WithLabelValues(q.label)
		n.dropped.WithLabelValues(q.label)
		n.queueLen.WithLabelValues(q.label)
	}
	return n, nil
}

// CheckAlertmanagerURL reports whether raw is a usable Alertmanager base
// URL (http or https, with a host, without query or fragment).
func CheckAlertmanagerURL(raw string) error {
	_, err := parseAlertmanagerURL(raw)
	return err
}

// parseAlertmanagerURL checks an Alertmanager base URL.
func parseAlertmanagerURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("alertmanager URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("alertmanager URL %q: scheme must be http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("alertmanager URL %q: no host", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("alertmanager URL %q: must not have a query or fragment", u.Redacted())
	}
	return u, nil
}

// URLs returns the Alertmanager base URLs, credentials redacted.
func (n *Notifier) URLs() []string {
	out := make([]string, len(n.ams))
	for i, q := range n.ams {
		out[i] = q.label
	}
	return out
}

// Send queues alerts for every Alertmanager, adding the external labels. It
// never blocks on the network. An alert whose label set is already queued
// replaces the queued copy in its place (the newest state wins, and a queue
// never holds two copies of one alert); when a queue is full its oldest
// alerts are dropped and counted.
func (n *Notifier) Send(alerts ...PostableAlert) {
	if len(alerts) == 0 {
		return
	}
	batch := make([]PostableAlert, len(alerts))
	keys := make([]string, len(alerts))
	for i, a := range alerts {
		labels := maps.Clone(a.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		for k, v := range n.opts.ExternalLabels {
			if _, ok := labels[k]; !ok {
				labels[k] = v
			}
		}
		a.Labels = labels
		a.StartsAt = a.StartsAt.UTC()
		a.EndsAt = a.EndsAt.UTC()
		batch[i] = a
		keys[i] = labelsKey(labels)
	}
	for _, q := range n.ams {
		q.mu.Lock()
		for i, a := range batch {
			if at, dup := q.index[keys[i]]; dup {
				q.queue[at] = a
				continue
			}
			q.index[keys[i]] = len(q.queue)
			q.queue = append(q.queue, a)
		}
		if over := len(q.queue) - n.opts.QueueCapacity; over > 0 {
			q.dropHeadLocked(over)
			n.dropped.WithLabelValues(q.label).Add(float64(over))
			n.opts.Logger.Warn("alertmanager queue full, oldest alerts dropped", "url", q.label, "dropped", over)
		}
		n.queueLen.WithLabelValues(q.label).Set(float64(len(q.queue)))
		q.mu.Unlock()
		select {
		case q.more <- struct{}{}:
		default:
		}
	}
}

// take removes up to n alerts from the head of the queue.
func (q *amQueue) take(n int) []PostableAlert {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := min(n, len(q.queue))
	if k == 0 {
		return nil
	}
	out := make([]PostableAlert, k)
	copy(out, q.queue)
	q.dropHeadLocked(k)
	return out
}

// dropHeadLocked removes the first k alerts of the queue and reindexes the
// rest; q.mu is held.
func (q *amQueue) dropHeadLocked(k int) {
	q.queue = append(q.queue[:0], q.queue[k:]...)
	clear(q.index)
	for i, a := range q.queue {
		q.index[labelsKey(a.Labels)] = i
	}
}

func (q *amQueue) length() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue)
}

// Run sends queued alerts until ctx ends, then cancels requests in flight
// and returns once every sender goroutine has stopped. Alerts still queued
// are discarded.
func (n *Notifier) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, q := range n.ams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.loop(ctx, q)
		}()
	}
	wg.Wait()
}

func (n *Notifier) loop(ctx context.Context, q *amQueue) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.more:
		}
		for ctx.Err() == nil {
			batch := q.take(n.opts.BatchSize)
			if len(batch) == 0 {
				break
			}
			n.queueLen.WithLabelValues(q.label).Set(float64(q.length()))
			start := time.Now()
			err := n.post(ctx, q, batch)
			n.latency.WithLabelValues(q.label).Observe(time.Since(start).Seconds())
			n.sent.WithLabelValues(q.label).Add(float64(len(batch)))
			if err != nil {
				n.errs.WithLabelValues(q.label).Add(float64(len(batch)))
				if !errors.Is(err, context.Canceled) || ctx.Err() == nil {
					n.opts.Logger.Error("sending alerts to Alertmanager failed", "url", q.label, "alerts", len(batch), "err", err)
				}
			}
		}
	}
}

// maxErrorBody bounds how much of an error answer is read for the log, and
// maxAnswerBody how much more of any answer is read and discarded.
const (
	maxErrorBody  = 512
	maxAnswerBody = 1 << 20
)

func (n *Notifier) post(ctx context.Context, q *amQueue, batch []PostableAlert) error {
	body, err := json.Marshal(batch)
	if err != nil {
		return fmt.Errorf("encoding alerts: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tcpstate-exporter")
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			// url.Error repeats the URL, credentials included: keep the cause.
			err = uerr.Err
		}
		return fmt.Errorf("posting to %s: %w", q.label, err)
	}
	defer resp.Body.Close()
	// The answer is read whole (up to maxAnswerBody) within the timeout: a
	// 2xx whose body has not arrived when the timeout ends is a failure,
	// not a success found after the deadline.
	msg, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err == nil {
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBody))
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("posting to %s: %s: %s", q.label, resp.Status, bytes.TrimSpace(msg))
	}
	if err != nil {
		return fmt.Errorf("posting to %s: %s, reading the answer: %w", q.label, resp.Status, err)
	}
	return nil
}

// Describe sends the Notifier's metric descriptions.
func (n *Notifier) Describe(ch chan<- *prometheus.Desc) {
	n.sent.Describe(ch)
	n.errs.Describe(ch)
	n.dropped.Describe(ch)
	n.queueLen.Describe(ch)
	n.queueCap.Describe(ch)
	n.latency.Describe(ch)
}

// Collect sends the Notifier's metrics.
func (n *Notifier) Collect(ch chan<- prometheus.Metric) {
	n.sent.Collect(ch)
	n.errs.Collect(ch)
	n.dropped.Collect(ch)
	n.queueLen.Collect(ch)
	n.queueCap.Collect(ch)
	n.latency.Collect(ch)
}
