package pglocal_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/pglocal"
)

// tempDir is like t.TempDir but under /tmp and searchable by others, because as root the
// server runs as an unprivileged user that must traverse it.
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "pglocal-test-*")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func queryInt(t *testing.T, ctx context.Context, url, sql string) int {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var n int
	if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func exec(t *testing.T, ctx context.Context, url, sql string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestFindBinDir(t *testing.T) {
	// Not parallel: it sets PG_BINDIR (t.Setenv).
	dir, err := pglocal.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("FindBinDir() = %s, which lacks %s: %v", dir, name, err)
		}
	}

	t.Setenv("PG_BINDIR", t.TempDir())
	if _, err := pglocal.FindBinDir(); err == nil || !strings.Contains(err.Error(), "PG_BINDIR") {
		t.Errorf("FindBinDir with a bogus PG_BINDIR: err = %v, want one naming PG_BINDIR", err)
	}
}

// TestLifecycle walks one cluster through everything relay and the fault tests do with it;
// one cluster keeps the test fast, since initdb dominates the cost.
func TestLifecycle(t *testing.T) {
	// Not parallel: it kills and restarts its cluster.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dataDir := filepath.Join(tempDir(t), "data")

	// Kill must not lose acknowledged commits, which Fast's synchronous_commit=off would.
	srv, err := pglocal.Start(ctx, pglocal.Options{
		DataDir: dataDir, Fast: true, Stdout: os.Stderr,
		Settings: map[string]string{"synchronous_commit": "on"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	if srv.Port() == 0 || srv.Attached() {
		t.Fatalf("Port() = %d, Attached() = %v after a fresh start", srv.Port(), srv.Attached())
	}
	port := srv.Port()
	if got := queryInt(t, ctx, srv.URL("postgres"), "select 1"); got != 1 {
		t.Fatalf("select 1 = %d", got)
	}
	if got := queryInt(t, ctx, srv.URL("postgres"), "select current_setting('max_connections')::int"); got != 200 {
		t.Errorf("max_connections = %d, want 200", got)
	}
	if got := queryInt(t, ctx, srv.URL("postgres"),
		"select (current_setting('fsync') = 'off' and current_setting('synchronous_commit') = 'on')::int"); got != 1 {
		t.Error("want fsync=off from Fast and synchronous_commit=on from Settings")
	}

	t.Run("CreateDatabase", func(t *testing.T) {
		name := `Odd "name"`
		if err := srv.CreateDatabase(ctx, name, ""); err != nil {
			t.Fatal(err)
		}
		exec(t, ctx, srv.URL(name), "create table kept (v int); insert into kept values (42)")
		if err := srv.CreateDatabase(ctx, "copy", name); err != nil {
			t.Fatal(err)
		}
		if got := queryInt(t, ctx, srv.URL("copy"), "select v from kept"); got != 42 {
			t.Errorf("template copy has v = %d, want 42", got)
		}
	})

	t.Run("StartAgainAttaches", func(t *testing.T) {
		again, err := pglocal.Start(ctx, pglocal.Options{DataDir: dataDir})
		if err != nil {
			t.Fatal(err)
		}
		if !again.Attached() || again.Port() != port {
			t.Errorf("second Start: Attached() = %v, Port() = %d; want true, %d", again.Attached(), again.Port(), port)
		}
		if _, err := pglocal.Start(ctx, pglocal.Options{DataDir: dataDir, Port: port + 1}); err == nil {
			t.Error("Start with a different explicit port on a running data dir succeeded")
		}
	})

	t.Run("RestartKeepsData", func(t *testing.T) {
		if err := srv.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if srv.Port() != port {
			t.Fatalf("port changed across Restart: %d -> %d", port, srv.Port())
		}
		if got := queryInt(t, ctx, srv.URL("copy"), "select v from kept"); got != 42 {
			t.Errorf("after restart v = %d, want 42", got)
		}
	})

	t.Run("KillThenRestart", func(t *testing.T) {
		exec(t, ctx, srv.URL("copy"), "insert into kept values (43)")
		if err := srv.Kill(); err != nil {
			t.Fatal(err)
		}
		if _, err := pgx.Connect(ctx, srv.URL("postgres")); err == nil {
			t.Fatal("connected to a killed server")
		}
		if err := srv.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if got := queryInt(t, ctx, srv.URL("copy"), "select count(*) from kept"); got != 2 {
			t.Errorf("after crash recovery count = %d, want 2", got)
		}
	})

	t.Run("StopThenStartReusesPort", func(t *testing.T) {
		if err := srv.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if err := srv.Stop(ctx); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
		if _, err := pgx.Connect(ctx, srv.URL("postgres")); err == nil {
			t.Fatal("connected to a stopped server")
		}
		again, err := pglocal.Start(ctx, pglocal.Options{DataDir: dataDir, Fast: true,
			Settings: map[string]string{"synchronous_commit": "on"}})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = again.Stop(context.Background()) }()
		if again.Attached() || again.Port() != port {
			t.Errorf("Start after Stop: Attached() = %v, Port() = %d; want false, %d", again.Attached(), again.Port(), port)
		}
		if got := queryInt(t, ctx, again.URL("copy"), "select count(*) from kept"); got != 2 {
			t.Errorf("after stop/start count = %d, want 2", got)
		}
		if err := again.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStartRejectsForeignDir(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dataDir := filepath.Join(tempDir(t), "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "precious.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := pglocal.Start(ctx, pglocal.Options{DataDir: dataDir})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Start on a non-empty non-cluster dir: err = %v, want a 'not empty' refusal", err)
	}
}

func TestStartAsRootNeedsTraversableParent(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("only root hands the server to another user")
	}
	parent := filepath.Join(tempDir(t), "private")
	if err := os.Mkdir(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := pglocal.Start(context.Background(), pglocal.Options{DataDir: filepath.Join(parent, "data")})
	if err == nil || !strings.Contains(err.Error(), "cannot traverse "+parent) {
		t.Fatalf("err = %v, want one saying the server user cannot traverse %s", err, parent)
	}
}

func TestStartRejectsBadSetting(t *testing.T) {
	t.Parallel()
	_, err := pglocal.Start(context.Background(), pglocal.Options{
		DataDir:  filepath.Join(tempDir(t), "data"),
		Settings: map[string]string{"port = 1\nfsync": "off"},
	})
	if err == nil || !strings.Contains(err.Error(), "invalid setting") {
		t.Fatalf("err = %v, want an invalid setting error", err)
	}
}
