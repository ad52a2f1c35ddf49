package pipeline_test

import (
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/pipeline"
)

func TestDefaultRetryScheduleIsSvixsAndJitterStaysWithin20Percent(t *testing.T) {
	t.Parallel()
	got, err := pipeline.ParseRetrySchedule("5s,5m,30m,2h,5h,10h,10h")
	if err != nil {
		t.Fatal(err)
	}
	var total time.Duration
	for i, d := range got {
		if d != pipeline.DefaultRetrySchedule()[i] {
			t.Fatalf("schedule %v, want %v", got, pipeline.DefaultRetrySchedule())
		}
		total += d
	}
	if total < 27*time.Hour || total > 28*time.Hour {
		t.Errorf("schedule spans %s, want about 27.6h", total)
	}
	for _, r := range []float64{0, 0.5, 0.999999} {
		p := pipeline.RetryPolicy{Schedule: got, Jitter: 0.2, Rand: func() float64 { return r }}
		for attempt := 1; attempt <= len(got); attempt++ {
			wait, ok := p.NextRetry(attempt, 0)
			base := got[attempt-1]
			if !ok || wait < base*8/10 || wait > base*12/10 {
				t.Errorf("attempt %d r=%g: wait %s, want within ±20%% of %s", attempt, r, wait, base)
			}
		}
		if _, ok := p.NextRetry(len(got)+1, 0); ok {
			t.Errorf("retry offered after the schedule ended")
		}
	}
}

func TestRetryAfterIsClampedToOneToTwoTimesTheScheduledWait(t *testing.T) {
	t.Parallel()
	p := pipeline.RetryPolicy{Schedule: []time.Duration{10 * time.Second}}
	for _, c := range []struct{ retryAfter, want time.Duration }{
		{0, 10 * time.Second},
		{time.Second, 10 * time.Second},      // a receiver cannot make the relay hammer
		{15 * time.Second, 15 * time.Second}, // honoured
		{time.Hour, 20 * time.Second},        // nor stall it
	} {
		if got, _ := p.NextRetry(1, c.retryAfter); got != c.want {
			t.Errorf("Retry-After %s: wait %s, want %s", c.retryAfter, got, c.want)
		}
	}
}

func TestParseRetryScheduleRejectsBadInputClearly(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"5s,abc":    `invalid duration "abc"`,
		"5s,-1s":    "must be positive",
		"5s,,5m":    `invalid duration ""`,
		"1000h":     "at most 720h",
		"0s":        "must be positive",
		"5s, 5m ,x": `invalid duration "x"`,
	} {
		_, err := pipeline.ParseRetrySchedule(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRetrySchedule(%q) = %v, want an error containing %q", in, err, want)
		}
	}
	if s, err := pipeline.ParseRetrySchedule(""); err != nil || len(s) != 0 {
		t.Errorf("empty schedule: %v %v, want no retries", s, err)
	}
}

// FuzzParseRetrySchedule: never panics; what it accepts is 0-100 positive waits of at
// most 720h each.
func FuzzParseRetrySchedule(f *testing.F) {
	for _, s := range []string{"5s,5m,30m,2h,5h,10h,10h", "", "none", "1ns", "5s,,", "-5s", "9223372036854775807ns", "1e3s", strings.Repeat("1s,", 101)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := pipeline.ParseRetrySchedule(s)
		if err != nil {
			return
		}
		if len(got) > 100 {
			t.Fatalf("accepted %d waits", len(got))
		}
		for _, d := range got {
			if d <= 0 || d > 720*time.Hour {
				t.Fatalf("accepted wait %s from %q", d, s)
			}
		}
	})
}
