package pipeline_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/pipeline"
)

// Validate is the one range check of a Config: the defaults pass, each bound holds at
// its edge and fails just past it, and the error names the field.
func TestValidateChecksEveryRangeOnceAndNamesTheField(t *testing.T) {
	if err := pipeline.DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	for _, tc := range []struct {
		field string
		set   func(*pipeline.Config)
		ok    bool
	}{
		{"HTTPTimeout", func(c *pipeline.Config) { c.HTTPTimeout = time.Millisecond }, true},
		{"HTTPTimeout", func(c *pipeline.Config) { c.HTTPTimeout = 10 * time.Minute }, true},
		{"HTTPTimeout", func(c *pipeline.Config) { c.HTTPTimeout = 0 }, false},
		{"HTTPTimeout", func(c *pipeline.Config) { c.HTTPTimeout = 10*time.Minute + 1 }, false},
		{"Retention", func(c *pipeline.Config) { c.Retention = 0 }, true},
		{"Retention", func(c *pipeline.Config) { c.Retention = -1 }, false},
		{"EventRetention", func(c *pipeline.Config) { c.EventRetention = 24 * time.Hour }, true},
		{"EventRetention", func(c *pipeline.Config) { c.EventRetention = -1 }, false},
		{"EventRetention", func(c *pipeline.Config) { c.EventRetention = 101 * 365 * 24 * time.Hour }, false},
		{"DisableAfter", func(c *pipeline.Config) { c.DisableAfter = 0 }, true},
		{"DisableAfter", func(c *pipeline.Config) { c.DisableAfter = -time.Hour }, false},
		{"PollInterval", func(c *pipeline.Config) { c.PollInterval = time.Millisecond }, true},
		{"PollInterval", func(c *pipeline.Config) { c.PollInterval = 0 }, false},
		{"PollInterval", func(c *pipeline.Config) { c.PollInterval = time.Hour + 1 }, false},
		{"Workers", func(c *pipeline.Config) { c.Workers = 10000 }, true},
		{"Workers", func(c *pipeline.Config) { c.Workers = 0 }, false},
		{"Workers", func(c *pipeline.Config) { c.Workers = 10001 }, false},
		{"WebhookConcurrency", func(c *pipeline.Config) { c.WebhookConcurrency = 1 }, true},
		{"WebhookConcurrency", func(c *pipeline.Config) { c.WebhookConcurrency = 0 }, false},
		{"ClaimBatch", func(c *pipeline.Config) { c.ClaimBatch = 0 }, false},
		{"OutboxBatch", func(c *pipeline.Config) { c.OutboxBatch = 0 }, false},
		{"Retry.Jitter", func(c *pipeline.Config) { c.Retry.Jitter = 1 }, false},
		{"Retry.Jitter", func(c *pipeline.Config) { c.Retry.Jitter = 0 }, true},
	} {
		cfg := pipeline.DefaultConfig()
		tc.set(&cfg)
		err := cfg.Validate()
		var bad *pipeline.ConfigError
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s at its bound refused: %v", tc.field, err)
		case !tc.ok && (!errors.As(err, &bad) || bad.Field != tc.field || bad.Reason == ""):
			t.Errorf("%s out of range: %v, want a ConfigError for %s", tc.field, err, tc.field)
		}
	}
}

// The default schedule cannot be changed by whoever holds a copy of it.
func TestDefaultRetryScheduleIsImmutable(t *testing.T) {
	s := pipeline.DefaultRetrySchedule()
	s[0] = time.Hour
	cfg := pipeline.DefaultConfig()
	cfg.Retry.Schedule[1] = time.Hour
	if got := pipeline.DefaultRetrySchedule(); got[0] != 5*time.Second || got[1] != 5*time.Minute {
		t.Errorf("default schedule changed through a copy: %v", got)
	}
	if got := pipeline.DefaultConfig().Retry.Schedule; !slices.Equal(got, pipeline.DefaultRetrySchedule()) {
		t.Errorf("DefaultConfig's schedule %v differs from DefaultRetrySchedule", got)
	}
}
