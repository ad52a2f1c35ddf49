package cli

import (
	"strings"
	"testing"
)

func TestRedactDatabaseURLHidesOnlyThePassword(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://relay:s3cret@db:5432/relay?sslmode=disable":       "postgres://relay:xxxxx@db:5432/relay?sslmode=disable",
		"postgresql://relay@db/relay?password=s3cret&sslmode=require": "postgresql://relay@db/relay?password=xxxxx&sslmode=require",
		"postgres://relay@db/relay":                                   "postgres://relay@db/relay",
		"host=db user=relay password=s3cret dbname=relay":             "host=db user=relay password=xxxxx dbname=relay",
		"host=db password = 's3 cr\\'et' dbname=relay":                "host=db password = xxxxx dbname=relay",
		"postgres://relay:s3cret@db:5432/relay%zz":                    "(unparsable URL, not shown)",
	} {
		got := redactDatabaseURL(in)
		if got != want {
			t.Errorf("redactDatabaseURL(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "s3") {
			t.Errorf("password leaked: %q", got)
		}
	}
}

func TestMaskSettingHidesSecretsByName(t *testing.T) {
	for name, secret := range map[string]string{
		"WEBHOOK_SECRET":           "whsec_c2VjcmV0LWJ5dGVzLWZvci1zdHJpcGU=",
		"RELAY_KEY_ENCRYPTION_KEY": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
		"SOME_API_TOKEN":           "tok-123456",
		"--admin-password":         "hunter2",
	} {
		if got := maskSetting(name, secret); got == secret || strings.Contains(got, secret[:len(secret)-4]) {
			t.Errorf("%s logged as %q", name, got)
		}
	}
	for name, v := range map[string]string{"RELAY_HTTP_TIMEOUT": "10s", "RELAY_ALLOWED_TARGETS": "receiver", "RELAY_WORKERS": "64"} {
		if got := maskSetting(name, v); got != v {
			t.Errorf("%s = %q masked to %q; only secrets are masked", name, v, got)
		}
	}
}

func TestHealthURLReachesWildcardListenersOnLoopback(t *testing.T) {
	for addr, want := range map[string]string{
		":8080":          "http://127.0.0.1:8080/readyz",
		"0.0.0.0:8080":   "http://127.0.0.1:8080/readyz",
		"[::]:8080":      "http://[::1]:8080/readyz",
		"relay:9000":     "http://relay:9000/readyz",
		"127.0.0.1:1234": "http://127.0.0.1:1234/readyz",
	} {
		if got, err := healthURL(addr, "/readyz"); err != nil || got != want {
			t.Errorf("healthURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	if _, err := healthURL("8080", "/readyz"); err == nil || !strings.Contains(err.Error(), "RELAY_ADDR") {
		t.Errorf("healthURL without a port: %v, want an error naming RELAY_ADDR", err)
	}
}
