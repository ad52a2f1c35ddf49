package pipeline_test

import (
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/relayhq/relay/relay/internal/metrics"
	"github.com/relayhq/relay/relay/internal/pipeline"
	"github.com/relayhq/relay/testutil"
)

// scraper reads /metrics over HTTP and parses the text exposition format, as
// Prometheus would.
type scraper struct {
	t   *testing.T
	url string
}

func newScraper(t *testing.T, m *metrics.Metrics) *scraper {
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return &scraper{t: t, url: srv.URL + "/metrics"}
}

func (s *scraper) scrape() map[string]*dto.MetricFamily {
	s.t.Helper()
	resp, err := http.Get(s.url)
	if err != nil {
		s.t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("scrape: HTTP %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		s.t.Fatalf("scrape: parse exposition format: %v", err)
	}
	return fams
}

// value is a sample's value (a histogram's observation count), -1 when absent. labels
// are name, value pairs the sample must carry.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// expect polls the scrape until every named sample has its wanted value, and reports
// all the differences at once when they do not.
func (s *scraper) expect(timeout time.Duration, want map[string]float64) map[string]*dto.MetricFamily {
	s.t.Helper()
	var fams map[string]*dto.MetricFamily
	var diff []string
	deadline := time.Now().Add(timeout)
	for {
		fams, diff = s.scrape(), nil
		for key, v := range want {
			name, labels := splitKey(key)
			if got := value(fams, name, labels...); got != v {
				diff = append(diff, key+": got "+model.SampleValue(got).String()+", want "+model.SampleValue(v).String())
			}
		}
		if len(diff) == 0 {
			return fams
		}
		if time.Now().After(deadline) {
			sort.Strings(diff)
			s.t.Fatalf("metrics after %v:\n  %s", timeout, strings.Join(diff, "\n  "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// splitKey reads `name{k="v",k2="v2"}`.
func splitKey(key string) (string, []string) {
	name, rest, ok := strings.Cut(key, "{")
	if !ok {
		return key, nil
	}
	var labels []string
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		k, v, _ := strings.Cut(kv, "=")
		labels = append(labels, k, strings.Trim(v, `"`))
	}
	return name, labels
}

func TestMetricsFollowDeliveriesAsTheySucceedAndFail(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ok := testutil.NewReceiver(t, nil)
	failing := testutil.NewReceiver(t, status(http.StatusInternalServerError))
	addWebhook(t, db, "post.published", ok.URL(), "")
	addWebhook(t, db, "post.published", failing.URL(), "")
	m := metrics.New(metrics.Options{Pool: db.Pool, Version: "test"})
	s := newScraper(t, m)

	// Before any relay runs, the events wait in the outbox.
	for i := range 3 {
		emit(t, db, "post.published", map[string]any{"n": i})
	}
	fams := s.expect(5*time.Second, map[string]float64{
		"relay_database_up":                            1,
		"relay_outbox_backlog_events":                  3,
		"relay_deliveries_pending":                     0,
		"relay_deliveries_failed":                      0,
		"relay_events_read_total":                      0,
		`relay_deliveries_total{outcome="retry"}`:      0,
		`relay_build_info{version="test"}`:             1,
		`relay_webhooks_disabled_total{reason="gone"}`: 0,
	})
	if age := value(fams, "relay_outbox_oldest_unread_age_seconds"); age < 0 {
		t.Errorf("oldest unread age = %v with a backlog, want a non-negative age", age)
	}
	for _, runtime := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes"} {
		if value(fams, runtime) < 0 {
			t.Errorf("%s missing: the Go runtime and process collectors are not registered", runtime)
		}
	}

	// The schedule gives each delivery three attempts: the failing webhook's three
	// deliveries make two retries each and then fail; the healthy one's succeed.
	cfg := testConfig(t)
	cfg.Metrics = m
	startRelay(t, db, cfg)
	s.expect(20*time.Second, map[string]float64{
		"relay_events_read_total":                      3,
		`relay_deliveries_total{outcome="succeeded"}`:  3,
		`relay_deliveries_total{outcome="retry"}`:      6,
		`relay_deliveries_total{outcome="failed"}`:     3,
		`relay_deliveries_total{outcome="cancelled"}`:  0,
		"relay_attempt_duration_seconds":               12,
		"relay_delivery_lag_seconds":                   3,
		"relay_outbox_backlog_events":                  0,
		"relay_outbox_oldest_unread_age_seconds":       0,
		"relay_deliveries_pending":                     0,
		"relay_deliveries_failed":                      3,
		`relay_webhooks_disabled_total{reason="gone"}`: 0,
	})
	if n := failing.Count(); n != 9 {
		t.Errorf("failing receiver got %d requests, want 9", n)
	}
}

func TestMetricsCountDisablesAndCancelledDeliveries(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	// 410 on the first request, held until the others are queued behind it (one at a
	// time to that webhook), so the disable finds them pending and cancels them.
	gone, release := heldGoneReceiver(t)
	// The other webhook fails once and would retry in a minute, but is auto-disabled
	// first (RELAY_DISABLE_AFTER=1s), which cancels its delivery.
	failing := testutil.NewReceiver(t, status(http.StatusServiceUnavailable))
	goneHook := addWebhook(t, db, "post.edited", gone.URL(), "")
	addWebhook(t, db, "post.unpublished", failing.URL(), "")

	m := metrics.New(metrics.Options{Pool: db.Pool})
	s := newScraper(t, m)
	cfg := testConfig(t)
	cfg.Metrics = m
	cfg.WebhookConcurrency = 1
	cfg.DisableAfter = time.Second
	cfg.Retry = pipeline.RetryPolicy{Schedule: []time.Duration{time.Minute}}
	startRelay(t, db, cfg)
	for i := range 4 {
		emit(t, db, "post.edited", map[string]any{"n": i})
	}
	emit(t, db, "post.unpublished", map[string]any{})
	gone.WaitFor(t, 1, 10*time.Second)
	failing.WaitFor(t, 1, 10*time.Second)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE webhook_id = $1 AND status = 'pending'`, goneHook.ID) == 4
	}, "deliveries not queued behind the held request")
	close(release)

	s.expect(15*time.Second, map[string]float64{
		`relay_webhooks_disabled_total{reason="gone"}`:    1,
		`relay_webhooks_disabled_total{reason="failing"}`: 1,
		`relay_deliveries_total{outcome="failed"}`:        1, // the 410
		`relay_deliveries_total{outcome="retry"}`:         1, // the 503
		`relay_deliveries_total{outcome="cancelled"}`:     4, // 3 behind the 410, 1 awaiting its retry
		`relay_deliveries_total{outcome="succeeded"}`:     0,
		"relay_deliveries_pending":                        0,
		"relay_deliveries_failed":                         1,
	})
	if n := queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'cancelled'`); n != 4 {
		t.Errorf("%d cancelled deliveries in the database, want the 4 counted", n)
	}
}

// A nil *Metrics is the pipeline without metrics: every method is a no-op.
func TestNilMetricsAreSafe(t *testing.T) {
	t.Parallel()
	var m *metrics.Metrics
	m.EventRead()
	m.Attempt("succeeded", time.Second, time.Second)
	m.WebhookDisabled(metrics.DisabledGone, 3)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil Metrics handler answered %d, want 404", rec.Code)
	}
}
