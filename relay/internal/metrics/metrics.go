// Package metrics is the relay's Prometheus instrumentation, served on /metrics.
//
// A Metrics owns a registry of its own (nothing is registered globally, so tests and
// several relays in one process never collide). The pipeline calls its methods at the
// points where a result becomes durable; every method is safe on a nil *Metrics, which
// is how the pipeline runs without metrics.
//
// Two kinds of figures are exposed: counters and histograms of what this process did
// (events read, attempts and their outcomes, durations, lag, disables), and gauges read
// from the database at scrape time (backlog, pending and failed deliveries), which are
// database-wide and so the same on every relay. README.md (Operations, Metrics) lists them all.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/status"
	"github.com/relayhq/relay/relay/internal/store"
)

// Outcomes of an attempt, as the "outcome" label of relay_deliveries_total.
const (
	OutcomeSucceeded = "succeeded" // a 2xx; the delivery is done
	OutcomeRetry     = "retry"     // failed; another attempt is scheduled
	OutcomeFailed    = "failed"    // failed; no attempt is left (or the receiver said 410)
	OutcomeCancelled = "cancelled" // never attempted again: its webhook was disabled
)

// Reasons a webhook is disabled, as the "reason" label of relay_webhooks_disabled_total.
const (
	DisabledGone    = "gone"    // the receiver answered 410 Gone
	DisabledFailing = "failing" // no 2xx for RELAY_DISABLE_AFTER
)

// Options configure New.
type Options struct {
	// Pool is queried at scrape time for the database gauges; nil leaves them out.
	Pool *pgxpool.Pool
	// Version is the relay_build_info label.
	Version string
	// QueryTimeout bounds the scrape-time queries (default 5s), so a slow database
	// makes a scrape report relay_database_up 0 rather than hang until Prometheus
	// gives up on it.
	QueryTimeout time.Duration
	// Log receives scrape errors; the zero value discards them.
	Log zerolog.Logger
	// GhostOutcomes are the refusal reasons of the Ghost inbound endpoint, so that each
	// series exists (at 0) from the start.
	GhostOutcomes []string
}

// Metrics holds the relay's collectors. Create it with New.
type Metrics struct {
	reg        *prometheus.Registry
	eventsRead prometheus.Counter
	outcomes   map[string]prometheus.Counter
	duration   prometheus.Histogram
	lag        prometheus.Histogram
	disabled   map[string]prometheus.Counter
	ghostIn    *prometheus.CounterVec
}

// GhostAccepted is the outcome label of relay_ghost_inbound_total for a stored event;
// every other value is a refusal reason (ghostsite.Reasons).
const GhostAccepted = "accepted"

// attemptBuckets span a fast local receiver to the longest RELAY_HTTP_TIMEOUT people
// set in practice; a timed-out attempt lands in the bucket of the timeout.
var attemptBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// lagBuckets go from the sub-second lag of a healthy pipeline to the default retry
// schedule's last attempt (about 27.6 hours after the event).
var lagBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800,
	3600, 2 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 48 * 3600}

// New registers every collector on a fresh registry.
func New(o Options) *Metrics {
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = 5 * time.Second
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		eventsRead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_events_read_total",
			Help: "Outbox events this process read and fanned out to webhooks (a batch replayed after a crash counts again).",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "relay_attempt_duration_seconds",
			Help:    "Duration of recorded delivery attempts, from the request's start to the response headers (or the error).",
			Buckets: attemptBuckets,
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "relay_delivery_lag_seconds",
			Help:    "From an event's created_at to the end of its successful (2xx) attempt, retries included.",
			Buckets: lagBuckets,
		}),
		outcomes: map[string]prometheus.Counter{},
		disabled: map[string]prometheus.Counter{},
	}
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_deliveries_total",
		Help: "Delivery attempts recorded by this process, by outcome (succeeded, retry, failed), plus pending deliveries it cancelled when it disabled their webhook (cancelled).",
	}, []string{"outcome"})
	// Every label value exists from the start, so rate() and alerts see a 0 rather
	// than a missing series until the first failure.
	for _, o := range []string{OutcomeSucceeded, OutcomeRetry, OutcomeFailed, OutcomeCancelled} {
		m.outcomes[o] = outcomes.WithLabelValues(o)
	}
	disabled := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_webhooks_disabled_total",
		Help: "Webhooks this process disabled, by reason: gone (the receiver answered 410) or failing (no 2xx for RELAY_DISABLE_AFTER).",
	}, []string{"reason"})
	for _, r := range []string{DisabledGone, DisabledFailing} {
		m.disabled[r] = disabled.WithLabelValues(r)
	}
	m.ghostIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_ghost_inbound_total",
		Help: "Webhook requests from connected Ghost sites, by outcome: accepted, or why one was refused (Ghost does not retry a refused request).",
	}, []string{"outcome"})
	for _, o := range append([]string{GhostAccepted}, o.GhostOutcomes...) {
		m.ghostIn.WithLabelValues(o)
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "relay_build_info",
		Help:        "Always 1; the version label is the relay's version.",
		ConstLabels: prometheus.Labels{"version": o.Version},
	})
	build.Set(1)
	m.reg.MustRegister(m.eventsRead, outcomes, m.duration, m.lag, disabled, m.ghostIn, build,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if o.Pool != nil {
		m.reg.MustRegister(&dbCollector{pool: o.Pool, timeout: o.QueryTimeout, log: o.Log})
	}
	return m
}

// Handler serves the registry in the Prometheus exposition formats. Scrapes run the
// database queries, so at most a few run at once; more get 503 rather than pile up
// connections.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:            m.reg, // counts promhttp's own errors
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	})
}

// EventRead counts one outbox event fanned out.
func (m *Metrics) EventRead() {
	if m == nil {
		return
	}
	m.eventsRead.Inc()
}

// Attempt counts a recorded attempt. status is the delivery's state after it:
// Succeeded, Failed, or Pending (a retry is scheduled). took is the attempt's duration;
// lag, from the event's created_at to the end of the attempt, is observed only for a
// success.
func (m *Metrics) Attempt(status store.Status, took, lag time.Duration) {
	if m == nil {
		return
	}
	var outcome string
	switch status {
	case store.Succeeded:
		outcome = OutcomeSucceeded
	case store.Pending:
		outcome = OutcomeRetry
	case store.Failed:
		outcome = OutcomeFailed
	default:
		return // not an attempt's outcome: better unmeasured than mislabelled
	}
	m.outcomes[outcome].Inc()
	m.duration.Observe(took.Seconds())
	if outcome == OutcomeSucceeded {
		// created_at is the database's clock and the attempt's end is ours: clamp the
		// skew rather than record a negative lag.
		m.lag.Observe(max(lag, 0).Seconds())
	}
}

// WebhookDisabled counts a webhook this process disabled for reason (DisabledGone or
// DisabledFailing), and the pending deliveries that cancelled.
func (m *Metrics) WebhookDisabled(reason string, cancelled int64) {
	if m == nil {
		return
	}
	if c, ok := m.disabled[reason]; ok {
		c.Inc()
	}
	if cancelled > 0 {
		m.outcomes[OutcomeCancelled].Add(float64(cancelled))
	}
}

// GhostInbound counts one request of a connected Ghost site: GhostAccepted, or the
// reason it was refused.
func (m *Metrics) GhostInbound(outcome string) {
	if m == nil {
		return
	}
	m.ghostIn.WithLabelValues(outcome).Inc()
}

// dbCollector reads the database-wide gauges at scrape time, so they are exact
// whichever relay is scraped and cost nothing between scrapes.
type dbCollector struct {
	pool    *pgxpool.Pool
	timeout time.Duration
	log     zerolog.Logger
}

var (
	upDesc = prometheus.NewDesc("relay_database_up",
		"1 if the scrape-time database queries succeeded; when 0 the relay_outbox_* and relay_deliveries_{pending,failed} gauges are absent.", nil, nil)
	backlogDesc = prometheus.NewDesc("relay_outbox_backlog_events",
		"Committed outbox events not yet read by the relays (consumer group \"relay\"); database-wide.", nil, nil)
	oldestDesc = prometheus.NewDesc("relay_outbox_oldest_unread_age_seconds",
		"Age of the oldest unread outbox event, 0 when none; database-wide.", nil, nil)
	pendingDesc = prometheus.NewDesc("relay_deliveries_pending",
		"Deliveries due or waiting for a retry; database-wide.", nil, nil)
	failedDesc = prometheus.NewDesc("relay_deliveries_failed",
		"Deliveries that exhausted their retries (until redelivered or pruned); database-wide.", nil, nil)
)

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{upDesc, backlogDesc, oldestDesc, pendingDesc, failedDesc} {
		ch <- d
	}
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	s, err := status.ReadSummary(ctx, c.pool)
	if err != nil {
		// A scrape of a relay whose database is down must still succeed: that is
		// when the process metrics and relay_database_up matter most.
		c.log.Warn().Err(err).Msg("metrics: database gauges unavailable")
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(s.Backlog))
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, s.OldestUnread.Seconds())
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(s.Pending))
	ch <- prometheus.MustNewConstMetric(failedDesc, prometheus.GaugeValue, float64(s.Failed))
}
