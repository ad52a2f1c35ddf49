package pipeline

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/metrics"
	"github.com/relayhq/relay/relay/internal/netguard"
	"github.com/relayhq/relay/relay/internal/schedule"
	"github.com/relayhq/relay/relay/internal/store"
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
	Error      string // empty on 2xx; the relay's own words, kept on the attempt
	// GhostError is the same failure as Ghost writes it into last_triggered_error
	// ("Request failed: <code>"), for receivers' tools that read that column; empty on 2xx.
	GhostError string
	Excerpt    string
	RetryAfter time.Duration
	// FinalURL is where the last request of the attempt went, when a redirect was
	// followed; empty otherwise.
	FinalURL string
}

func (a attemptResult) succeeded() bool { return a.StatusCode >= 200 && a.StatusCode < 300 }

// deliverer POSTs claimed deliveries. It never holds a database transaction while
// talking HTTP: the claim committed before, and the recorder writes after.
type deliverer struct {
	cfg       Config
	transport *http.Transport
	userAgent string
	pool      *pgxpool.Pool // checks a delivery that waited, disables a webhook on 410
	slots     slots
	rec       *recorder
	log       zerolog.Logger
	now       func() time.Time
}

// slots is the scheduler's side the deliverer talks to (claimSubscriber).
type slots interface {
	// delivery returns the started delivery id.
	delivery(id int64) (*schedule.Delivery, bool)
	// requestDone frees the webhook's request slot; gone drops what is held for it.
	requestDone(id int64, gone bool)
	// done frees the worker.
	done(id int64)
}

// staleAfter is how long a delivery may wait in the queue before its attempt checks
// that it is still wanted.
const staleAfter = 500 * time.Millisecond

// newTransport is the delivery HTTP client. post calls its RoundTrip directly and
// follows redirects itself (Go's http.Client would turn a POST into a GET on 301/302,
// where Ghost re-sends the POST with its body, and would copy every header per request).
func newTransport(cfg Config) *http.Transport {
	targets := cfg.Targets
	if targets == nil {
		targets = &netguard.Policy{}
	}
	dialer := &net.Dialer{Timeout: cfg.HTTPTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		// No proxy: the SSRF guard must see the address actually connected to.
		Proxy:             nil,
		DialContext:       targets.DialContext(dialer),
		ForceAttemptHTTP2: true,
		MaxIdleConns:      max(1024, cfg.Workers),
		// Every attempt in flight may go to one host (many webhooks of one receiver
		// service): a smaller idle pool closes and redials connections on every
		// request (measured: a fifth of the relay's CPU at 10 webhooks on one host).
		MaxIdleConnsPerHost:   cfg.Workers,
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
}

// handle is the Watermill handler of the "deliver" stage. It returns an error only when
// the result could not be recorded; a failing receiver is a recorded, retried attempt,
// never an error.
func (d *deliverer) handle(msg *message.Message) error {
	id, err := strconv.ParseInt(msg.Metadata.Get(deliveryIDKey), 10, 64)
	if err != nil {
		return fmt.Errorf("deliver: message %s names no delivery", msg.UUID)
	}
	defer d.slots.done(id)
	c, ok := d.slots.delivery(id)
	if !ok {
		return fmt.Errorf("deliver: delivery %d was not started by this relay", id)
	}
	ctx := msg.Context()
	if time.Since(c.ClaimedAt) > staleAfter && !d.stillWanted(ctx, c) {
		return nil
	}
	res := d.post(ctx, &c.Claimed)
	gone := res.StatusCode == http.StatusGone
	if gone {
		// Before the webhook's next request may start: it gets nothing more.
		d.disableGone(ctx, c)
	}
	// The receiver may get its next request while this result is recorded.
	d.slots.requestDone(id, gone)
	out := d.decide(&c.Claimed, res)
	if err := d.rec.record(ctx, out); err != nil {
		d.log.Error().Err(err).Int64("delivery_id", c.ID).Msg("could not record attempt; the lease will expire and the delivery will be tried again")
		return err
	}
	d.cfg.Metrics.Attempt(out.Status, res.Duration, res.Started.Add(res.Duration).Sub(c.CommittedAt))
	if !res.succeeded() {
		ev := d.log.Warn()
		if out.Status == store.Failed {
			ev = d.log.Error()
		}
		ev.Int64("delivery_id", c.ID).Str("event_id", c.EventID).Str("event", c.Event).
			Str("webhook_id", c.WebhookID).Int("attempt", c.Attempts+1).
			Int("status_code", res.StatusCode).Str("error", res.Error).
			Str("outcome", string(out.Status)).Dur("duration", res.Duration).
			Msg("delivery attempt failed")
	}
	return nil
}

// stillWanted checks a delivery that waited in this relay's queue: its webhook may have
// been disabled or deleted, or it cancelled, since it was claimed.
func (d *deliverer) stillWanted(ctx context.Context, c *schedule.Delivery) bool {
	ok, err := store.StillWanted(ctx, d.pool, c.Lease)
	if err != nil {
		return true // cannot tell: attempt it; the record is fenced anyway
	}
	return ok
}

// disableGone disables the webhook whose receiver answered 410 and cancels its pending
// deliveries, except this one (its own result records it as failed).
func (d *deliverer) disableGone(ctx context.Context, c *schedule.Delivery) {
	const reason = "receiver answered 410 Gone"
	disabled, cancelled, err := store.DisableWebhook(ctx, d.pool, c.WebhookID, reason, c.ID)
	if err != nil {
		d.log.Error().Err(err).Str("webhook_id", c.WebhookID).Msg("could not disable webhook after 410")
		return
	}
	if disabled { // else another attempt or relay did it
		d.cfg.Metrics.WebhookDisabled(metrics.DisabledGone, cancelled)
		d.log.Warn().Str("webhook_id", c.WebhookID).Str("reason", reason).
			Int64("cancelled_deliveries", cancelled).Msg("webhook disabled")
	}
}

// maxRedirects is how many redirects one attempt follows, as Ghost's client would
// (Ghost follows more; five covers http->https plus a trailing slash with room to spare).
const maxRedirects = 5

// post makes one attempt. Every header is set fresh per attempt except webhook-id,
// which is the event's id so that receivers can deduplicate.
//
// Like Ghost, it follows 301, 302, 307 and 308 by sending the same POST, body and
// signatures to the new location. Every hop dials through the SSRF guard, so a redirect
// to a refused address fails the attempt; a redirect from https to http is refused, as
// it would send the event in the clear.
func (d *deliverer) post(ctx context.Context, c *store.Claimed) (res attemptResult) {
	res.Started = d.now()
	ctx, cancel := context.WithTimeout(ctx, d.cfg.HTTPTimeout)
	defer cancel()
	defer func() { res.Duration = time.Since(res.Started) }()

	header := http.Header{}
	if err := d.sign(header, c, res.Started); err != nil {
		res.Error, res.GhostError = err.Error(), ghostRequestFailed("unknown")
		return res
	}
	target, err := url.Parse(c.TargetURL)
	if err != nil {
		res.Error, res.GhostError = "invalid target URL: "+redactURLError(err), ghostRequestFailed("ERR_INVALID_URL")
		return res
	}
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), bytes.NewReader(c.Body))
		if err != nil {
			res.Error, res.GhostError = "invalid target URL: "+redactURLError(err), ghostRequestFailed("ERR_INVALID_URL")
			return res
		}
		// RoundTrip does not change the request's header, so every hop shares one.
		req.Header = header
		resp, err := d.transport.RoundTrip(req)
		if err != nil {
			res.Error, res.GhostError = describeHTTPError(err, d.cfg.HTTPTimeout), ghostRequestFailed(nodeErrorCode(err))
			if hop > 0 {
				res.Error = fmt.Sprintf("after %d redirect(s), to %s: %s", hop, target.Host, res.Error)
			}
			return res
		}
		next, redirectErr := redirectTarget(target, resp)
		if next == nil && redirectErr == nil {
			d.readResponse(resp, &res)
			return res
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		resp.Body.Close()
		code := "ERR_NON_2XX_3XX_RESPONSE"
		if redirectErr == nil && hop == maxRedirects {
			redirectErr, code = fmt.Errorf("more than %d redirects", maxRedirects), "ERR_TOO_MANY_REDIRECTS"
		}
		if redirectErr != nil {
			res.StatusCode = resp.StatusCode
			res.Error = fmt.Sprintf("HTTP %d: redirect not followed: %v", resp.StatusCode, redirectErr)
			res.GhostError = ghostRequestFailed(code)
			return res
		}
		target = next
		res.FinalURL = target.String()
	}
}

// redirectTarget returns where a redirect response points, nil when resp is not a
// redirect that is followed, or an error when it is one that cannot be followed.
func redirectTarget(from *url.URL, resp *http.Response) (*url.URL, error) {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return nil, nil
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, errors.New("no Location header")
	}
	next, err := from.Parse(loc)
	if err != nil {
		return nil, errors.New("Location is not a URL")
	}
	switch {
	case next.Scheme != "http" && next.Scheme != "https":
		return nil, fmt.Errorf("Location scheme %q is not http(s)", clip(next.Scheme, 20))
	case from.Scheme == "https" && next.Scheme == "http":
		return nil, errors.New("a redirect from https to http would send the event in the clear")
	case next.Hostname() == "":
		return nil, errors.New("Location has no host")
	}
	next.Fragment, next.RawFragment = "", ""
	return next, nil
}

// readResponse takes what is kept of a final response: the status, and for a failure
// the start of its body and any Retry-After.
func (d *deliverer) readResponse(resp *http.Response, res *attemptResult) {
	defer resp.Body.Close()
	res.StatusCode = resp.StatusCode
	if !res.succeeded() {
		buf, _ := io.ReadAll(io.LimitReader(resp.Body, excerptLimit))
		res.Excerpt = strings.ToValidUTF8(string(buf), "\uFFFD")
		res.Error = "HTTP " + strconv.Itoa(resp.StatusCode)
		// What Ghost's client (got) reports for any status it does not follow or accept.
		res.GhostError = ghostRequestFailed("ERR_NON_2XX_3XX_RESPONSE")
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			res.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), res.Started)
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
}

func (d *deliverer) sign(h http.Header, c *store.Claimed, now time.Time) error {
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", d.userAgent)
	// Receivers written for Ghost read Content-Version to know the payload's shape:
	// the version the event's Ghost site sent, else the Ghost version whose shapes
	// relay.emit's documented payloads follow.
	cv := c.ContentVersion
	if cv == "" {
		cv = ghostContentVersion
	}
	h.Set("Content-Version", cv)
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
	if c.StripeSign && d.cfg.StripeSecret != "" {
		h.Set("Stripe-Signature", signing.StripeSignature(d.cfg.StripeSecret, now, c.Body))
	}
	return nil
}

// decide turns an attempt into the delivery's next state.
func (d *deliverer) decide(c *store.Claimed, res attemptResult) store.Outcome {
	out := store.Outcome{Lease: c.Lease, Started: res.Started, Duration: res.Duration, StatusCode: res.StatusCode,
		Error: res.Error, GhostError: res.GhostError, Excerpt: res.Excerpt, FinalURL: res.FinalURL, Status: store.Pending,
		CommittedAt: c.CommittedAt, Keyed: c.OrderingKey != ""}
	switch {
	case res.succeeded():
		out.Status = store.Succeeded
	case res.StatusCode == http.StatusGone:
		out.Status = store.Failed
	default:
		wait, ok := d.cfg.Retry.NextRetry(c.Attempts+1, res.RetryAfter)
		if !ok {
			out.Status = store.Failed
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

// ghostContentVersion is the Content-Version of events that did not come from a Ghost
// site: the Ghost release whose webhook payloads the README's shapes follow.
const ghostContentVersion = "v6.65"

// ghostRequestFailed is Ghost's last_triggered_error for a failed request: its text is
// "Request failed: " and the error code of its HTTP client, at most 50 characters (the
// column's size in Ghost).
func ghostRequestFailed(code string) string {
	s := "Request failed: " + code
	if len(s) > 50 {
		s = s[:50]
	}
	return s
}

// nodeErrorCode names a transport failure with the code Node's HTTP stack (which Ghost's
// client reports) gives it, so that last_triggered_error reads as Ghost's would.
func nodeErrorCode(err error) string {
	var dnsErr *net.DNSError
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.Is(err, netguard.ErrBlocked):
		return "URL_PRIVATE_INVALID"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return "ETIMEDOUT"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ECONNREFUSED"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "ECONNRESET"
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return "ENOTFOUND"
		}
		return "EAI_AGAIN"
	case errors.As(err, &unknownCA):
		return "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
	case errors.As(err, &badHost):
		return "ERR_TLS_CERT_ALTNAME_INVALID"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "CERT_HAS_EXPIRED"
	}
	return "unknown"
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
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
