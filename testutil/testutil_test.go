package testutil_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func TestNewDBIsolatedAndMigrated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := testutil.NewDB(t), testutil.NewDB(t)
	if a.URL == b.URL || a.Name == b.Name {
		t.Fatalf("two NewDB calls share a database: %s", a.URL)
	}
	for _, db := range []*testutil.DB{a, b} {
		var migrated bool
		err := db.Pool.QueryRow(ctx, `select to_regclass('relay.outbox') is not null`).Scan(&migrated)
		if err != nil {
			t.Fatal(err)
		}
		if !migrated {
			t.Errorf("%s has no relay.outbox: schema not migrated", db.Name)
		}
	}

	if _, err := a.Pool.Exec(ctx, `create table only_in_a (v int); insert into only_in_a values (1)`); err != nil {
		t.Fatal(err)
	}
	var exists bool
	if err := b.Pool.QueryRow(ctx, `select to_regclass('only_in_a') is not null`).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Error("a table created in one test database is visible in another")
	}

	// The URL must work on its own too: relay code under test connects with it.
	conn, err := pgx.Connect(ctx, a.URL)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := conn.QueryRow(ctx, `select v from only_in_a`).Scan(&v); err != nil || v != 1 {
		t.Errorf("select via URL: v = %d, err = %v", v, err)
	}
	_ = conn.Close(ctx)
}

func TestNewDBDroppedOnCleanup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var name string
	// A leaked connection must not stop the drop.
	var leaked *pgx.Conn
	t.Run("inner", func(t *testing.T) {
		db := testutil.NewDB(t)
		name = db.Name
		var err error
		if leaked, err = pgx.Connect(ctx, db.URL); err != nil {
			t.Fatal(err)
		}
	})
	defer func() { _ = leaked.Close(ctx) }()

	probe := testutil.NewDB(t)
	var n int
	if err := probe.Pool.QueryRow(ctx, `select count(*) from pg_database where datname = $1`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test's cleanup", name)
	}
}

func TestNewDBParallel(t *testing.T) {
	t.Parallel()
	for i := 0; i < 4; i++ {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			db := testutil.NewDB(t)
			if err := db.Pool.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	srv := testutil.Cluster(t)
	if srv != testutil.Cluster(t) {
		t.Error("Cluster returned two different servers in one process")
	}
	conn, err := pgx.Connect(context.Background(), srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(context.Background())
}

func TestNewClusterRestart(t *testing.T) {
	// Not parallel: it restarts a PostgreSQL cluster.
	ctx := context.Background()
	srv := testutil.NewCluster(t)
	if srv.Port() == testutil.Cluster(t).Port() {
		t.Fatal("NewCluster returned the shared cluster")
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
}

func TestReceiverRecords(t *testing.T) {
	t.Parallel()
	rc := testutil.NewReceiver(t, nil)
	for i := 0; i < 3; i++ {
		id := "msg_a"
		if i == 2 {
			id = "msg_b"
		}
		req, err := http.NewRequest(http.MethodPost, rc.URL()+"/hook?x=1", strings.NewReader(fmt.Sprint("body", i)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("webhook-id", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("default response status = %d, want 200", resp.StatusCode)
		}
	}

	got := rc.WaitFor(t, 3, time.Second)
	if len(got) != 3 || rc.Count() != 3 {
		t.Fatalf("WaitFor returned %d, Count() = %d; want 3", len(got), rc.Count())
	}
	if r := got[1]; r.Method != http.MethodPost || r.Path != "/hook?x=1" || string(r.Body) != "body1" || r.At.IsZero() {
		t.Errorf("second request recorded as %+v", r)
	}
	if ids := rc.ByWebhookID(); ids["msg_a"] != 2 || ids["msg_b"] != 1 || len(ids) != 2 {
		t.Errorf("ByWebhookID() = %v", ids)
	}

	// Requests() is a copy: scribbling on it must not change the record.
	got[0].Body[0] = 'X'
	got[0].Header.Set("webhook-id", "changed")
	if r := rc.Requests()[0]; string(r.Body) != "body0" || r.Header.Get("webhook-id") != "msg_a" {
		t.Errorf("mutating Requests() changed the record: %+v", r)
	}
}

func TestReceiverRespondAndConcurrency(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	rc := testutil.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		calls.Add(1)
		if bytes.Equal(body, []byte("fail")) {
			http.Error(w, "nope", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})

	var wg sync.WaitGroup
	statuses := make([]int, 20)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := "ok"
			if i%2 == 0 {
				body = "fail"
			}
			resp, err := http.Post(rc.URL(), "text/plain", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	rc.WaitFor(t, 20, 5*time.Second)
	wg.Wait()
	for i, s := range statuses {
		want := http.StatusNoContent
		if i%2 == 0 {
			want = http.StatusServiceUnavailable
		}
		if s != want {
			t.Errorf("request %d: status %d, want %d", i, s, want)
		}
	}
	if calls.Load() != 20 {
		t.Errorf("respond called %d times, want 20", calls.Load())
	}
}

// A respond func that hangs like a dead endpoint must not block the test's cleanup.
func TestReceiverHungRespondDoesNotBlockCleanup(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	t.Run("inner", func(t *testing.T) {
		rc := testutil.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
			<-r.Context().Done()
		})
		go func() {
			defer close(done)
			resp, err := http.Post(rc.URL(), "text/plain", strings.NewReader("x"))
			if err == nil {
				_ = resp.Body.Close()
			}
		}()
		rc.WaitFor(t, 1, 5*time.Second)
	})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("client still waiting after the receiver was cleaned up")
	}
}

func TestEventually(t *testing.T) {
	t.Parallel()
	start := time.Now()
	testutil.Eventually(t, time.Second, func() bool { return time.Since(start) > 30*time.Millisecond }, "never %s", "true")

	// The failing path, observed through a stand-in TB.
	ft := &fakeTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		testutil.Eventually(ft, 20*time.Millisecond, func() bool { return false }, "waiting for %s", "godot")
	}()
	if !strings.Contains(ft.msg, "waiting for godot") {
		t.Errorf("failure message = %q", ft.msg)
	}
}

// fakeTB records Fatalf instead of failing the real test; it panics to stop the caller as
// t.Fatalf would (the real one uses runtime.Goexit).
type fakeTB struct {
	testing.TB
	msg string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic("fatal")
}
