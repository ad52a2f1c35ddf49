package main_test

// Tests of what an operator meets first, against the real binary: configuration
// errors, --help, the start/stop log lines, /metrics, `relay status`, `relay
// healthcheck` and the sample receiver.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relayhq/relay/testutil"
)

// runRelay runs the binary to completion with env added to a clean environment (so
// the developer's own RELAY_* variables cannot leak in) and returns its exit code and
// outputs.
func runRelay(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, relayBin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("run relay %v: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

// Every bad value stops `relay run` before it touches anything, exiting non-zero with
// one line on stderr that names the variable.
func TestInvalidConfigurationStopsStartupWithOneLineNamingTheVariable(t *testing.T) {
	db := testutil.NewDB(t)
	cases := []struct{ env, value string }{
		{"RELAY_HTTP_TIMEOUT", "banana"},
		{"RELAY_HTTP_TIMEOUT", "0s"},
		{"RELAY_HTTP_TIMEOUT", "-5s"},
		{"RELAY_HTTP_TIMEOUT", "11m"},
		{"RELAY_RETRY_SCHEDULE", "5s,soon"},
		{"RELAY_ALLOWED_TARGETS", "http://receiver:9000/"},
		{"RELAY_RETENTION", "forever"},
		{"RELAY_EVENT_RETENTION", "-1h"},
		{"RELAY_DISABLE_AFTER", "-1h"},
		{"RELAY_WORKERS", "0"},
		{"RELAY_WEBHOOK_CONCURRENCY", "many"},
		{"RELAY_POLL_INTERVAL", "0"},
		{"RELAY_MAX_CONNECTIONS", "0"},
		{"RELAY_MAX_CONNECTIONS", "lots"},
		{"RELAY_IDLE_TIMEOUT", "soon"},
		{"RELAY_IDLE_TIMEOUT", "0s"},
		{"RELAY_LOG_LEVEL", "loud"},
		{"RELAY_LOG_FORMAT", "xml"},
		{"RELAY_ADDR", "nowhere:99999"},
	}
	for _, tc := range cases {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			code, stdout, stderr := runRelay(t, []string{"DATABASE_URL=" + db.URL, tc.env + "=" + tc.value}, "run")
			if code == 0 {
				t.Fatalf("exit 0, want non-zero; stderr:\n%s", stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.env) {
				t.Errorf("stderr is not one line naming %s:\n%s", tc.env, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout not empty: %q", stdout)
			}
		})
	}
	// The flag twin fails the same way and names both spellings.
	code, _, stderr := runRelay(t, []string{"DATABASE_URL=" + db.URL}, "run", "--http-timeout=banana")
	if code == 0 || !strings.Contains(stderr, "RELAY_HTTP_TIMEOUT") || !strings.Contains(stderr, "--http-timeout") {
		t.Errorf("--http-timeout=banana: exit %d, stderr %q", code, stderr)
	}
}

// helpEntries splits kong's help into one entry per flag (its lines joined), so that a
// flag and the ($VAR) at the end of its wrapped help are read together.
func helpEntries(help string) []string {
	var entries []string
	for _, line := range strings.Split(help, "\n") {
		trimmed := strings.TrimSpace(line)
		indent := len(line) - len(strings.TrimLeft(line, " "))
		switch {
		case trimmed == "":
		case strings.HasPrefix(trimmed, "-") && indent <= 6: // "  -h, --help" or "      --addr"
			entries = append(entries, trimmed)
		case indent > 6 && len(entries) > 0: // the wrapped help of the flag above
			entries[len(entries)-1] += " " + trimmed
		}
	}
	return entries
}

var (
	envInHelp     = regexp.MustCompile(`\(\$([A-Z0-9_]+)\)`)
	getenvInCode  = regexp.MustCompile(`(?:Getenv|LookupEnv)\("([A-Z0-9_]+)"\)`)
	flagWithValue = regexp.MustCompile(`--([a-z0-9-]+)=(\S+)`)
)

// `relay run --help` lists every variable the relay reads, each with its flag and
// default; no variable is read behind the CLI's back.
func TestRunHelpListsEveryVariableWithItsFlagAndDefault(t *testing.T) {
	code, stdout, stderr := runRelay(t, nil, "run", "--help")
	if code != 0 {
		t.Fatalf("relay run --help: exit %d\n%s", code, stderr)
	}
	flags := map[string]string{} // env -> "--flag=default"
	for _, e := range helpEntries(stdout) {
		env := envInHelp.FindStringSubmatch(e)
		if env == nil {
			continue
		}
		fv := flagWithValue.FindStringSubmatch(e)
		if fv == nil {
			t.Errorf("entry for $%s has no --flag=default: %q", env[1], e)
			continue
		}
		flags[env[1]] = fv[0]
	}
	// README's configuration table.
	want := []string{"DATABASE_URL", "WEBHOOK_SECRET", "RELAY_DATA_DIR", "RELAY_ADDR", "RELAY_LOG_FORMAT",
		"RELAY_LOG_LEVEL", "RELAY_HTTP_TIMEOUT", "RELAY_RETRY_SCHEDULE", "RELAY_ALLOWED_TARGETS",
		"RELAY_RETENTION", "RELAY_EVENT_RETENTION", "RELAY_DISABLE_AFTER", "RELAY_WORKERS", "RELAY_WEBHOOK_CONCURRENCY",
		"RELAY_POLL_INTERVAL", "RELAY_INSTANCE_ID", "RELAY_MAX_CONNECTIONS", "RELAY_IDLE_TIMEOUT"}
	// And anything the code reads with os.Getenv, so that a variable added that way
	// (without a flag) fails here. Test helpers' own variables are not the relay's.
	for _, v := range getenvNames(t) {
		if !slices.Contains(want, v) {
			want = append(want, v)
		}
	}
	for _, v := range want {
		if _, ok := flags[v]; !ok {
			t.Errorf("relay run --help does not list $%s with a flag", v)
		}
	}
	for v, fd := range map[string]string{
		"RELAY_ADDR": `--addr=":8080"`, "RELAY_HTTP_TIMEOUT": `--http-timeout="10s"`,
		"RELAY_RETRY_SCHEDULE": `--retry-schedule="5s,5m,30m,2h,5h,10h,10h"`, "RELAY_RETENTION": `--retention="720h"`,
		"RELAY_EVENT_RETENTION": `--event-retention="0"`,
		"RELAY_DISABLE_AFTER":   `--disable-after="120h"`, "RELAY_WORKERS": `--workers="64"`,
		"RELAY_WEBHOOK_CONCURRENCY": `--webhook-concurrency="8"`, "RELAY_POLL_INTERVAL": `--poll-interval="1s"`,
		"RELAY_LOG_LEVEL": `--log-level="info"`, "RELAY_DATA_DIR": `--data-dir="./.relay"`,
		"RELAY_MAX_CONNECTIONS": `--max-connections="256"`, "RELAY_IDLE_TIMEOUT": `--idle-timeout="30s"`,
	} {
		if flags[v] != fd {
			t.Errorf("$%s: help shows %q, want the documented default %s", v, flags[v], fd)
		}
	}
}

// getenvNames lists the variables non-test code of the module reads directly.
func getenvNames(t *testing.T) []string {
	t.Helper()
	root := moduleRoot(t)
	var names []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testutil" || d.Name() == "relaytest" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range getenvInCode.FindAllStringSubmatch(string(src), -1) {
			if !slices.Contains(names, m[1]) && m[1] != "PATH" && m[1] != "HOME" && m[1] != "USER" {
				names = append(names, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// logLines parses a process's JSON log output.
func logLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines
}

func withMessage(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["message"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// The day-one operator path on the real binary: "relay started" with the config minus
// secrets, /metrics moving as deliveries succeed and fail, `relay status`, `relay
// healthcheck`, a verified delivery at `relay receive`, and "relay stopped".
func TestOperatorSeesStartMetricsStatusAndStop(t *testing.T) {
	db := testutil.NewDB(t)
	// The test cluster's URL carries its password (a TEST_DATABASE_URL may not: then a
	// made-up one, which a server that trusts ignores), which must never reach the log.
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	dbPassword, ok := u.User.Password()
	if !ok || dbPassword == "" {
		dbPassword = "pw-that-must-not-be-logged"
		u.User = url.UserPassword(u.User.Username(), dbPassword)
	}
	stripeSecret := "whsec_c3RyaXBlIHNlY3JldCB0aGF0IG11c3Qgbm90IGJlIGxvZ2dlZA=="

	// The sample receiver, verifying with the webhook's secret.
	hookSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("ops test webhook secret, 32 b!!"))
	recvAddr := freeAddr(t)
	recv := exec.Command(relayBin, "receive", "--addr", recvAddr)
	recv.Env = append(os.Environ(), "RECEIVER_SECRET="+hookSecret, "RELAY_LOG_FORMAT=json")
	recvOut := &syncBuffer{}
	recv.Stdout, recv.Stderr = recvOut, recvOut
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	recvDone := make(chan error, 1)
	go func() { recvDone <- recv.Wait() }()
	t.Cleanup(func() {
		_ = recv.Process.Signal(syscall.SIGTERM)
		<-recvDone
	})
	failing := testutil.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(http.StatusBadGateway) })

	var verifiedHook, failingHook string
	if err := db.Pool.QueryRow(context.Background(), `INSERT INTO relay.webhooks (event, target_url, secret) VALUES ('post.published', $1, $2) RETURNING id`,
		"http://"+recvAddr+"/hook", hookSecret).Scan(&verifiedHook); err != nil {
		t.Fatal(err)
	}
	failingHook = addWebhook(t, db.Pool, "post.published", failing.URL())

	p := startRelay(t, u.String(), "ops", "RELAY_LOG_LEVEL=info", "WEBHOOK_SECRET="+stripeSecret,
		"RELAY_RETRY_SCHEDULE=100ms", "RELAY_POLL_INTERVAL=100ms")
	code, _, stderr := runRelay(t, []string{"RELAY_ADDR=" + p.addr}, "healthcheck")
	if code != 0 {
		t.Errorf("relay healthcheck against a ready relay: exit %d, %s", code, stderr)
	}

	emitAll(context.Background(), t, db.Pool, 2, 2, 1, 0)
	metric := func(name string) string {
		resp, err := http.Get("http://" + p.addr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				return v
			}
		}
		return ""
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		return metric(`relay_deliveries_total{outcome="succeeded"}`) == "2" && metric(`relay_deliveries_total{outcome="failed"}`) == "2"
	}, "/metrics of the binary: succeeded %q, failed %q", metric(`relay_deliveries_total{outcome="succeeded"}`), metric(`relay_deliveries_total{outcome="failed"}`))
	if got := metric("relay_events_read_total"); got != "2" {
		t.Errorf("relay_events_read_total = %q, want 2", got)
	}
	if got := metric("relay_deliveries_failed"); got != "2" {
		t.Errorf("relay_deliveries_failed = %q, want 2", got)
	}

	// relay status, both ways.
	code, stdout, stderr := runRelay(t, []string{"DATABASE_URL=" + db.URL, "RELAY_LOG_FORMAT=json"}, "status", "--json")
	if code != 0 {
		t.Fatalf("relay status --json: exit %d: %s", code, stderr)
	}
	var st struct {
		Backlog  int64 `json:"outbox_backlog"`
		Pending  int64 `json:"pending"`
		Failed   int64 `json:"failed"`
		Webhooks []struct {
			ID        string  `json:"id"`
			Pending   int64   `json:"pending"`
			Failed    int64   `json:"failed"`
			LastError *string `json:"last_error"`
		} `json:"webhooks"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("relay status --json is not JSON: %v\n%s", err, stdout)
	}
	if st.Backlog != 0 || st.Pending != 0 || st.Failed != 2 || len(st.Webhooks) != 2 {
		t.Errorf("relay status --json: %s", stdout)
	}
	for _, w := range st.Webhooks {
		switch w.ID {
		case verifiedHook:
			if w.Failed != 0 || w.LastError != nil {
				t.Errorf("verified webhook: %+v", w)
			}
		case failingHook:
			if w.Failed != 2 || w.LastError == nil || *w.LastError != "HTTP 502" {
				t.Errorf("failing webhook: failed %d, last error %v; want 2 and HTTP 502", w.Failed, w.LastError)
			}
		}
	}
	code, stdout, stderr = runRelay(t, []string{"DATABASE_URL=" + db.URL}, "status")
	if code != 0 || !strings.Contains(stdout, "outbox backlog: 0") || !strings.Contains(stdout, "HTTP 502") ||
		!strings.Contains(stdout, "2 failed") {
		t.Errorf("relay status: exit %d\n%s%s", code, stdout, stderr)
	}

	// The receiver logged both deliveries as verified.
	testutil.Eventually(t, 5*time.Second, func() bool {
		return len(withMessage(logLines(t, recvOut.String()), "delivery received")) == 2
	}, "receiver did not log 2 deliveries:\n%s", recvOut.String())
	for _, l := range withMessage(logLines(t, recvOut.String()), "delivery received") {
		if l["verified"] != true || l["id"] == "" || l["body"] == nil {
			t.Errorf("receiver log line %v, want a verified delivery with id and body", l)
		}
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-p.done; err != nil {
		t.Fatalf("relay exit after SIGTERM: %v", err)
	}
	p.done <- nil
	out := p.out.String()
	lines := logLines(t, out)
	started := withMessage(lines, "relay started")
	if len(started) != 1 || len(withMessage(lines, "relay stopped")) != 1 {
		t.Fatalf("want one relay started and one relay stopped line:\n%s", out)
	}
	cfg, _ := started[0]["config"].(map[string]any)
	if cfg["RELAY_HTTP_TIMEOUT"] != "2s" || cfg["RELAY_INSTANCE_ID"] != "ops" {
		t.Errorf("relay started config lacks the settings: %v", started[0])
	}
	if got := fmt.Sprint(cfg["DATABASE_URL"]); !strings.Contains(got, "xxxxx") || !strings.Contains(got, u.Host) {
		t.Errorf("DATABASE_URL logged as %q, want the URL with its password masked", got)
	}
	if got := fmt.Sprint(cfg["WEBHOOK_SECRET"]); got == stripeSecret || got == "" {
		t.Errorf("WEBHOOK_SECRET logged as %q, want it masked", got)
	}
	for _, secret := range []string{dbPassword, stripeSecret, stripeSecret[len("whsec_"):]} {
		if strings.Contains(out, secret) {
			t.Errorf("a secret reached the log:\n%s", out)
		}
	}
	// One line per failed attempt, none per success, at info.
	if n := len(withMessage(lines, "delivery attempt failed")); n != 4 {
		t.Errorf("%d 'delivery attempt failed' lines, want 4 (2 deliveries x 2 attempts)", n)
	}
	for _, l := range lines {
		if l["level"] == "info" && l["delivery_id"] != nil {
			t.Errorf("per-delivery line at info: %v", l)
		}
	}

	// healthcheck of a relay that is gone fails.
	if code, _, _ := runRelay(t, []string{"RELAY_ADDR=" + p.addr}, "healthcheck", "--timeout=1s"); code == 0 {
		t.Errorf("relay healthcheck against a stopped relay: exit 0")
	}
}
