package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"testing"

	"github.com/relayhq/relay/testutil"
)

// TestBenchRunsEveryScenarioEndToEnd runs `relay bench` at toy sizes against the test
// server: it must finish, account for every delivery, and report sane figures. The
// figures themselves are the bench's business, not a test's.
func TestBenchRunsEveryScenarioEndToEnd(t *testing.T) {
	db := testutil.NewDB(t)
	cmd := exec.Command(relayBin, "bench", "--json", "--rate", "100", "--steady-for", "1s",
		"--backlog", "300", "--fanout-events", "100", "--webhooks", "3", "--idle-for", "1s")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+db.URL)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("relay bench: %v\n%s\n%s", err, out, stderr)
	}
	// The JSON report's documented fields, as a user's script reads them.
	var rep struct {
		InsertTxPerSec float64 `json:"raw_insert_tx_per_second"`
		HTTPPerSec     float64 `json:"raw_http_post_per_second"`
		Scenarios      []struct {
			Name       string  `json:"name"`
			Deliveries int     `json:"deliveries"`
			Duplicates int     `json:"duplicates"`
			PeakRSSMiB float64 `json:"relay_peak_rss_mib"`
			Latency    *struct {
				P50, P99, Max float64
			} `json:"latency"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, out)
	}
	if rep.InsertTxPerSec <= 0 || rep.HTTPPerSec <= 0 {
		t.Errorf("baselines not measured: %+v", rep)
	}
	want := map[int]int{0: 100, 1: 300, 2: 300, 3: 0} // deliveries per scenario
	if len(rep.Scenarios) != 4 {
		t.Fatalf("%d scenarios, want 4: %s", len(rep.Scenarios), out)
	}
	for i, s := range rep.Scenarios {
		if s.Deliveries != want[i] || s.Duplicates != 0 {
			t.Errorf("%s: %d deliveries (%d duplicates), want %d and none", s.Name, s.Deliveries, s.Duplicates, want[i])
		}
		if s.PeakRSSMiB <= 0 {
			t.Errorf("%s: no peak RSS measured", s.Name)
		}
	}
	if l := rep.Scenarios[0].Latency; l == nil || l.P50 <= 0 || l.P99 < l.P50 || l.Max < l.P99 {
		t.Errorf("steady scenario latency %+v", l)
	}
}
