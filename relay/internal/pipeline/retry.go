package pipeline

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// defaultRetrySchedule is Svix's schedule: the waits after the 1st, 2nd, ... failed
// attempt. A delivery gets len(schedule)+1 attempts in all (about 27.6 hours). An array,
// so that nobody can change it: DefaultRetrySchedule hands out copies.
var defaultRetrySchedule = [...]time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// DefaultRetrySchedule returns a fresh copy of the default schedule (RELAY_RETRY_SCHEDULE's
// default), which the caller may change.
func DefaultRetrySchedule() []time.Duration {
	s := defaultRetrySchedule
	return s[:]
}

// ParseRetrySchedule parses a comma-separated list of Go durations ("5s,5m,30m").
// Every wait must be positive; an empty schedule means "never retry".
func ParseRetrySchedule(s string) ([]time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return []time.Duration{}, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > 100 {
		return nil, fmt.Errorf("at most 100 retries, got %d", len(parts))
	}
	out := make([]time.Duration, 0, len(parts))
	for _, p := range parts {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("invalid duration %q: %w", strings.TrimSpace(p), err)
		}
		if d <= 0 {
			return nil, fmt.Errorf("invalid duration %q: must be positive", strings.TrimSpace(p))
		}
		if d > 30*24*time.Hour {
			return nil, fmt.Errorf("invalid duration %q: at most 720h", strings.TrimSpace(p))
		}
		out = append(out, d)
	}
	return out, nil
}

// RetryPolicy decides what happens after a failed attempt.
type RetryPolicy struct {
	Schedule []time.Duration
	// Jitter is the relative spread around each wait: 0.2 means ±20%.
	Jitter float64
	// Rand returns a number in [0,1); nil uses math/rand/v2. Tests inject it.
	Rand func() float64
}

// NextRetry returns the wait before the attempt after failed attempt number attempt
// (1-based), and false when the schedule is exhausted and the delivery has failed.
// retryAfter is the receiver's Retry-After (zero when absent); it is honoured within
// [wait, 2*wait] so that a receiver can slow the relay down but not stall it forever
// nor make it hammer.
func (p RetryPolicy) NextRetry(attempt int, retryAfter time.Duration) (time.Duration, bool) {
	if attempt < 1 || attempt > len(p.Schedule) {
		return 0, false
	}
	base := p.Schedule[attempt-1]
	r := rand.Float64
	if p.Rand != nil {
		r = p.Rand
	}
	wait := time.Duration(float64(base) * (1 + p.Jitter*(2*r()-1)))
	if retryAfter > 0 {
		wait = min(max(retryAfter, wait), 2*wait)
	}
	return wait, true
}

// parseRetryAfter reads a Retry-After header (delta-seconds or HTTP date); zero when
// absent or unparseable.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(30*24*3600))) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
