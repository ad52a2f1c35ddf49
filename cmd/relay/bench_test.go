package main_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/testutil"
)

// benchReport is the JSON report's documented fields, as a user's script reads them.
type benchReport struct {
	Server           string  `json:"server"`
	Mode             string  `json:"mode"`
	Durable          bool    `json:"durable"`
	Fsync            bool    `json:"fsync"`
	PGStatStatements bool    `json:"pg_stat_statements"`
	StatementsNote   string  `json:"pg_stat_statements_note"`
	InsertTxPerSec   float64 `json:"raw_insert_tx_per_second"`
	HTTPPerSec       float64 `json:"raw_http_post_per_second"`
	Scenarios        []struct {
		ID         string   `json:"id"`
		Name       string   `json:"name"`
		Mode       string   `json:"mode"`
		Events     int      `json:"events"`
		Webhooks   int      `json:"webhooks"`
		Expected   int      `json:"expected_deliveries"`
		Deliveries int      `json:"deliveries"`
		Duplicates int      `json:"duplicates"`
		Lost       int      `json:"lost"`
		OK         bool     `json:"ok"`
		Failure    string   `json:"failure"`
		PerSecond  float64  `json:"deliveries_per_second"`
		PeakRSSMiB float64  `json:"relay_peak_rss_mib"`
		RelayEnv   []string `json:"relay_env"`
		Latency    *struct {
			P50, P99, Max float64
		} `json:"latency"`
		WriteNS       int64   `json:"write_ns"`
		BodyBytes     int     `json:"body_bytes"`
		MBPerSecond   float64 `json:"mb_per_second"`
		ReceiverDelay int64   `json:"receiver_delay_ns"`
		Advice        *struct {
			WebhookConcurrency int     `json:"webhook_concurrency"`
			Workers            int     `json:"workers"`
			Ceiling            float64 `json:"ceiling_per_second"`
			Needed             int     `json:"needed_webhook_concurrency"`
			Setting            string  `json:"setting"`
		} `json:"concurrency_advice"`
		Replay *struct {
			Baseline        *struct{ P50 int64 } `json:"baseline_latency"`
			During          *struct{ P50 int64 } `json:"during_replay_latency"`
			P50Ratio        float64              `json:"p50_ratio"`
			ReplayPerSecond float64              `json:"replay_deliveries_per_second"`
		} `json:"replay"`
		RelayCPUPerDelivery float64  `json:"relay_cpu_us_per_delivery"`
		PGCPUPerDelivery    *float64 `json:"postgres_cpu_us_per_delivery"`
		Statements          []struct {
			Label       string  `json:"label"`
			Calls       int64   `json:"calls"`
			MeanMicros  float64 `json:"mean_us"`
			PerDelivery float64 `json:"us_per_delivery"`
		} `json:"statements"`
		StatementsNote string `json:"statements_note"`
		Fanout         *struct {
			Calls       int64   `json:"calls"`
			TotalMillis float64 `json:"total_ms"`
		} `json:"fanout_statement"`
		Tables []struct {
			Table string `json:"table"`
			Bytes int64  `json:"bytes"`
		} `json:"tables"`
		PGBytesPerDelivery float64 `json:"pg_bytes_per_delivery"`
	} `json:"scenarios"`
	Writer *struct {
		Mode    string `json:"mode"`
		Note    string `json:"note"`
		Rounds  int    `json:"rounds"`
		Emitted int64  `json:"events_emitted"`
		Stored  int64  `json:"events_stored"`
		OK      bool   `json:"ok"`
		Results []struct {
			Variant     string    `json:"variant"`
			Clients     int       `json:"clients"`
			PlainTPS    []float64 `json:"plain_tps"`
			EmitTPS     []float64 `json:"emit_tps"`
			Ratios      []float64 `json:"ratios"`
			RatioMedian float64   `json:"ratio_median"`
		} `json:"results"`
	} `json:"writer_cost"`
}

func runBench(t *testing.T, env []string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(relayBin, append([]string{"bench"}, args...)...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("relay bench %s: %v\n%s\n%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

func decodeBench(t *testing.T, out []byte) benchReport {
	t.Helper()
	var rep benchReport
	// Unmarshal refuses anything after the value: progress must not reach stdout.
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, out)
	}
	if rep.InsertTxPerSec <= 0 || rep.HTTPPerSec <= 0 {
		t.Errorf("baselines not measured: %+v", rep)
	}
	if want := map[bool]string{true: "durable", false: "fast"}[rep.Durable]; !strings.HasPrefix(rep.Mode, want+" (fsync "+map[bool]string{true: "on", false: "off"}[rep.Fsync]) {
		t.Errorf("mode %q does not match durable=%v fsync=%v", rep.Mode, rep.Durable, rep.Fsync)
	}
	for _, s := range rep.Scenarios {
		if !s.OK || s.Deliveries != s.Expected || s.Duplicates != 0 || s.Lost != 0 {
			t.Errorf("%s: %d of %d deliveries (%d duplicates, %d lost), ok %v: %s", s.Name, s.Deliveries, s.Expected, s.Duplicates, s.Lost, s.OK, s.Failure)
		}
		if s.PeakRSSMiB <= 0 {
			t.Errorf("%s: no peak RSS measured", s.Name)
		}
		if want := map[bool]string{true: "fsync on", false: "fsync off"}[rep.Fsync]; s.Mode != want {
			t.Errorf("%s: mode %q, want %q", s.Name, s.Mode, want)
		}
		if s.ID == "d" {
			continue
		}
		if s.PerSecond <= 0 || s.RelayCPUPerDelivery < 0 {
			t.Errorf("%s: %v deliveries/s, %v relay µs/delivery", s.Name, s.PerSecond, s.RelayCPUPerDelivery)
		}
		if rep.PGStatStatements {
			if len(s.Statements) == 0 || s.Fanout == nil || s.Fanout.Calls < 1 {
				t.Errorf("%s: pg_stat_statements on but no statements or no fan-out: %+v", s.Name, s.Statements)
			}
			for _, st := range s.Statements {
				if st.Label == "" || st.Calls < 1 || st.MeanMicros <= 0 {
					t.Errorf("%s: statement %+v", s.Name, st)
				}
			}
		} else if !strings.HasPrefix(s.StatementsNote, "n/a") {
			t.Errorf("%s: no statements and no n/a note (%q)", s.Name, s.StatementsNote)
		}
		tables := map[string]int64{}
		for _, tb := range s.Tables {
			tables[tb.Table] = tb.Bytes
		}
		for _, name := range []string{"relay.outbox", "relay.deliveries", "relay.delivery_attempts"} {
			if tables[name] <= 0 {
				t.Errorf("%s: no size for %s: %+v", s.Name, name, s.Tables)
			}
		}
		if s.PGBytesPerDelivery <= 0 {
			t.Errorf("%s: no PostgreSQL bytes per delivery", s.Name)
		}
	}
	return rep
}

// TestBenchRunsEveryScenarioEndToEnd runs `relay bench` at toy sizes on its own private
// PostgreSQL, in the default mode (durable, pg_stat_statements when installed): every
// scenario must finish, account for every delivery, and report sane figures. The
// figures themselves are the bench's business, not a test's.
func TestBenchRunsEveryScenarioEndToEnd(t *testing.T) {
	t.Parallel()
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "DATABASE_URL=") })
	out := runBench(t, env, "--json", "--rate", "100", "--steady-for", "1s",
		"--backlog", "300", "--fanout-events", "100", "--webhooks", "3", "--idle-for", "1s",
		"--writer-for", "300ms", "--writer-rounds", "2", "--writer-rows", "500",
		"--backlog-sizes", "200,400", "--widths", "1,5", "--width-events", "30",
		"--body-sizes", "200B,64KiB,1MiB", "--body-events", "10", "--body-budget", "4MiB",
		"--receiver-delays", "5ms,50ms", "--receiver-events", "40", "--replay-events", "500")
	rep := decodeBench(t, out)
	if rep.Server != "private" || !rep.Durable || !rep.Fsync {
		t.Errorf("default private server not durable: server %q, durable %v, fsync %v", rep.Server, rep.Durable, rep.Fsync)
	}
	if !rep.PGStatStatements && rep.StatementsNote == "" {
		t.Errorf("pg_stat_statements neither on nor explained")
	}

	count := map[string]int{}
	for _, s := range rep.Scenarios {
		count[s.ID]++
		switch s.ID {
		case "a":
			if l := s.Latency; l == nil || l.P50 <= 0 || l.P99 < l.P50 || l.Max < l.P99 {
				t.Errorf("steady scenario latency %+v", l)
			}
		case "b", "c", "e", "f", "g", "h":
			if s.WriteNS <= 0 {
				t.Errorf("%s: backlog write time not measured", s.Name)
			}
		}
		switch s.ID {
		case "g":
			if s.BodyBytes <= 0 || s.MBPerSecond <= 0 {
				t.Errorf("%s: body %d B, %v MB/s", s.Name, s.BodyBytes, s.MBPerSecond)
			}
			if s.BodyBytes == 1<<20 && s.Events != 4 {
				t.Errorf("%s: %d events of 1 MiB, want 4 (the 4 MiB budget)", s.Name, s.Events)
			}
		case "r":
			if r := s.Replay; r == nil || r.Baseline == nil || r.During == nil || r.P50Ratio <= 0 || r.ReplayPerSecond <= 0 {
				t.Errorf("%s: replay figures %+v", s.Name, s.Replay)
			}
		case "h":
			if s.ReceiverDelay <= 0 {
				t.Errorf("%s: no receiver delay", s.Name)
			}
			if a := s.Advice; a != nil {
				ceiling := float64(min(a.WebhookConcurrency, a.Workers)) / time.Duration(s.ReceiverDelay).Seconds()
				if a.Ceiling != ceiling || a.Needed < 1 || a.Setting == "" {
					t.Errorf("%s: advice %+v, want ceiling %v", s.Name, a, ceiling)
				}
			} else if !slices.ContainsFunc(s.RelayEnv, func(kv string) bool { return strings.HasPrefix(kv, "RELAY_WEBHOOK_CONCURRENCY=") }) {
				t.Errorf("%s: neither advice nor a verifying run", s.Name)
			}
		}
	}
	want := map[string]int{"a": 1, "b": 1, "c": 1, "d": 1, "e": 2, "f": 2, "g": 3, "r": 1}
	for id, n := range want {
		if count[id] != n {
			t.Errorf("%d scenario(s) %s, want %d: %s", count[id], id, n, out)
		}
	}
	if count["h"] < 2 { // plus one verifying run per latency the default concurrency cannot serve
		t.Errorf("%d scenario(s) h, want at least 2", count["h"])
	}

	w := rep.Writer
	if w == nil {
		t.Fatalf("no writer_cost: %s", out)
	}
	if !w.OK || w.Emitted <= 0 || w.Stored != w.Emitted || w.Mode != "fsync on" || w.Note == "" {
		t.Errorf("writer cost: ok %v, %d emitted, %d stored, mode %q, note %q", w.OK, w.Emitted, w.Stored, w.Mode, w.Note)
	}
	variants := map[string][]int{}
	for _, r := range w.Results {
		variants[r.Variant] = append(variants[r.Variant], r.Clients)
		if len(r.PlainTPS) != 2 || len(r.EmitTPS) != 2 || len(r.Ratios) != 2 || r.RatioMedian <= 0 {
			t.Errorf("writer %s, %d clients: %+v", r.Variant, r.Clients, r)
		}
	}
	if !slices.Equal(variants["tx"], []int{1, 8}) || !slices.Equal(variants["batch"], []int{1, 8}) {
		t.Errorf("writer variants %v, want tx and batch at 1 and 8 clients", variants)
	}
}

// TestBenchOnDatabaseURL runs `relay bench` as the River side-by-side script does,
// against an existing server (the test cluster: fsync off, no pg_stat_statements
// preload), in JSON and in text: the report must say the server's own mode, and say
// n/a where it cannot break the cost down.
func TestBenchOnDatabaseURL(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	args := []string{"--database-url", db.URL, "--scenarios", "a,b,d", "--rate", "100", "--steady-for", "1s", "--backlog", "200", "--idle-for", "1s"}
	rep := decodeBench(t, runBench(t, os.Environ(), append(args, "--json")...))
	if rep.Server != "DATABASE_URL" {
		t.Errorf("server %q", rep.Server)
	}
	var ids []string
	for _, s := range rep.Scenarios {
		ids = append(ids, s.ID)
	}
	if !slices.Equal(ids, []string{"a", "b", "d"}) || rep.Writer != nil {
		t.Errorf("scenarios %v (writer %v), want a, b, d only", ids, rep.Writer != nil)
	}

	text := string(runBench(t, os.Environ(), args...))
	mode := map[bool]string{true: "[fsync on]", false: "[fsync off]"}[rep.Fsync]
	for _, want := range []string{"on the DATABASE_URL server: " + rep.Mode, "baseline " + mode,
		"a: steady 100 events/s for 1s, 1 webhook " + mode, "b: drain a backlog of 200 events, 1 webhook " + mode,
		"d: idle for 1s " + mode, "ok: 100 of 100 deliveries, 0 duplicates, 0 lost", "cost per delivery " + mode} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
	if !rep.PGStatStatements && !strings.Contains(text, "statements n/a") {
		t.Errorf("text report does not say the statements are n/a:\n%s", text)
	}

	// The scratch databases, and the template they copy, are gone.
	rows, err := db.Pool.Query(context.Background(), `SELECT datname FROM pg_database WHERE datname LIKE 'relay\_bench\_%'`)
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(left) > 0 {
		t.Errorf("databases left behind: %v (%v)", left, err)
	}
}
