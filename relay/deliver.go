package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/metrics"
	"github.com/relayhq/relay/relay/netguard"
	"github.com/relayhq/relay/relay/signing"
)

// excerptLimit is how much of a failed response is kept for diagnosis.
const excerptLimit = 1024

// drainLimit is how much of a response body is read (and thrown away) so that the
// connection can be reused; a larger body costs a new connection, not a hang.
const drainLimit = 64 << 10

// responseHeaderLimit caps what a receiver's response headers (status line, 1xx
// responses and trailers included) may take; Go's default is 10 MiB, which a hostile
// receiver can make every attempt in flight read. Real receivers send well under 4 KiB.
const responseHeaderLimit = 32 << 10

// attemptResult is what one HTTP attempt produced, before it is recorded.
type attemptResult struct {
	Started    time.Time
	Duration   time.Duration
	StatusCode int    // 0 when no response arrived
	Error      string // empty on 2xx
	Excerpt    string
	RetryAfter time.Duration
}

func (a attemptResult) succeeded() bool { return a.StatusCode >= 200 && a.StatusCode < 300 }

// deliverer POSTs claimed deliveries. It never holds a database transaction while
// talking HTTP: the claim committed before, and the recorder writes after.
type deliverer struct {
	cfg       Config
	client    *http.Client
	userAgent string
	rec       *recorder
	store     *disabler
	log       zerolog.Logger
	now       func() time.Time
}

func newHTTPClient(cfg Config) *http.Client {
	targets := cfg.Targets
	if targets == nil {
		targets = &netguard.Policy{}
	}
	dialer := &net.Dialer{Timeout: cfg.HTTPTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		// No proxy: the SSRF guard must see the address actually connected to.
		Proxy:                 nil,
		DialContext:           targets.DialContext(dialer),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   max(cfg.WebhookConcurrency, 2),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.HTTPTimeout,
		ResponseHeaderTimeout: cfg.HTTPTimeout,
		// The same cap applies to HTTP/2 (as SETTINGS_MAX_HEADER_LIST_SIZE).
		MaxResponseHeaderBytes: responseHeaderLimit,
		// HTTP/2 flow control decides how much body a receiver may push before we read
		// it; Go's client defaults (4 MiB a stream, 1 GiB a connection) would let it
		// park megabytes per attempt in our memory. We read at most drainLimit.
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerStream:     drainLimit,
			MaxReceiveBufferPerConnection: 1 << 20,
		},
	}
	return &http.Client{
		Transport: transport,
		// Redirects are failures: following one would send the event (and its
		// signature) somewhere the operator never registered.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// handle is the Watermill handler of the "deliver" stage. It returns an error only when
// the result could not be recorded; a failing receiver is a recorded, retried attempt,
// never an error.
func (d *deliverer) handle(msg *message.Message) error {
	c, ok := claimedFrom(msg.Context())
	if !ok {
		return errors.New("deliver: message carries no claimed delivery")
	}
	if c.stale() && !d.stillOurs(msg.Context(), c) {
		c.done(false)
		return nil
	}
	res := d.post(msg.Context(), c)
	gone := res.StatusCode == http.StatusGone
	if gone {
		// Before the webhook's next request may start: it gets nothing more.
		if err := d.store.disable(msg.Context(), c.WebhookID, metrics.DisabledGone, "receiver answered 410 Gone", c.ID); err != nil {
			d.log.Error().Err(err).Str("webhook_id", c.WebhookID).Msg("could not disable webhook after 410")
		}
	}
	// The receiver may get its next request while this result is recorded.
	c.done(gone)
	out := d.decide(c, res)
	if err := d.rec.record(msg.Context(), out); err != nil {
		d.log.Error().Err(err).Int64("delivery_id", c.ID).Msg("could not record attempt; the lease will expire and the delivery will be tried again")
		return err
	}
	d.cfg.Metrics.Attempt(out.Status, res.Duration, res.Started.Add(res.Duration).Sub(c.CommittedAt))
	if !res.succeeded() {
		ev := d.log.Warn()
		if out.Status == statusFailed {
			ev = d.log.Error()
		}
		ev.Int64("delivery_id", c.ID).Str("event_id", c.EventID).Str("event", c.Event).
			Str("webhook_id", c.WebhookID).Int("attempt", c.Attempts+1).
			Int("status_code", res.StatusCode).Str("error", res.Error).
			Str("outcome", out.Status).Dur("duration", res.Duration).
			Msg("delivery attempt failed")
	}
	return nil
}

// stillOursSQL checks a delivery that waited in this relay's queue: the webhook may have
// been disabled or deleted, or the delivery cancelled, since it was claimed.
const stillOursSQL = `
SELECT EXISTS (SELECT 1 FROM relay.deliveries d JOIN relay.webhooks w ON w.id = d.webhook_id
                WHERE d.id = $1 AND d.lease_token = $2 AND d.status = 'pending' AND w.status = 'active')`

func (d *deliverer) stillOurs(ctx context.Context, c *claimed) bool {
	var ok bool
	if err := d.rec.pool.QueryRow(ctx, stillOursSQL, c.ID, c.LeaseToken).Scan(&ok); err != nil {
		return true // cannot tell: attempt it; the record is fenced anyway
	}
	return ok
}

// post makes one attempt. Every header is set fresh per attempt except webhook-id,
// which is the event's id so that receivers can deduplicate.
func (d *deliverer) post(ctx context.Context, c *claimed) (res attemptResult) {
	res.Started = d.now()
	ctx, cancel := context.WithTimeout(ctx, d.cfg.HTTPTimeout)
	defer cancel()
	defer func() { res.Duration = time.Since(res.Started) }()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.TargetURL, bytes.NewReader(c.Body))
	if err != nil {
		res.Error = "invalid target URL: " + redactURLError(err)
		return res
	}
	if err := d.sign(req.Header, c, res.Started); err != nil {
		res.Error = err.Error()
		return res
	}
	resp, err := d.client.Do(req)
	if err != nil {
		res.Error = describeHTTPError(err, d.cfg.HTTPTimeout)
		return res
	}
	defer resp.Body.Close()
	res.StatusCode = resp.StatusCode
	if !res.succeeded() {
		buf, _ := io.ReadAll(io.LimitReader(resp.Body, excerptLimit))
		res.Excerpt = strings.ToValidUTF8(string(buf), "\uFFFD")
		res.Error = "HTTP " + strconv.Itoa(resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			res.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), res.Started)
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	return res
}

func (d *deliverer) sign(h http.Header, c *claimed, now time.Time) error {
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", d.userAgent)
	h.Set("webhook-id", c.EventID)
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	if c.Secret != "" {
		sig, err := signing.StandardSignature(c.Secret, c.EventID, now, c.Body)
		if err != nil {
			return fmt.Errorf("cannot sign with the webhook's secret: %w", err)
		}
		h.Set("webhook-signature", sig)
		h.Set("X-Ghost-Signature", signing.GhostSignature(c.Secret, c.Body, now))
	}
	if d.cfg.StripeSecret != "" && strings.HasPrefix(c.Event, "stripe.") {
		h.Set("Stripe-Signature", signing.StripeSignature(d.cfg.StripeSecret, now, c.Body))
	}
	return nil
}

// decide turns an attempt into the delivery's next state.
func (d *deliverer) decide(c *claimed, res attemptResult) result {
	out := result{Delivery: c, Attempt: res, Status: statusPending}
	switch {
	case res.succeeded():
		out.Status = statusSucceeded
	case res.StatusCode == http.StatusGone:
		out.Status = statusFailed
	default:
		wait, ok := d.cfg.Retry.NextRetry(c.Attempts+1, res.RetryAfter)
		if !ok {
			out.Status = statusFailed
		} else {
			out.NextAt = res.Started.Add(res.Duration + wait)
		}
	}
	return out
}

// describeHTTPError says what went wrong without the URL, which may carry a token.
func describeHTTPError(err error, timeout time.Duration) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, netguard.ErrBlocked):
		return err.Error()
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Sprintf("timeout after %s", timeout)
	}
	msg := err.Error()
	if !utf8.ValidString(msg) {
		msg = strings.ToValidUTF8(msg, "\uFFFD")
	}
	return msg
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func redactURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
