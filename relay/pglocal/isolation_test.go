package pglocal_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/relayhq/relay/relay/pglocal"
	"github.com/relayhq/relay/schema"
)

// probeEnv, when set, turns the test binary into the probe that another OS user runs
// against a private cluster: it tries every way in and reports each result as JSON.
const probeEnv = "PGLOCAL_TEST_PROBE"

// probeRequest is what the probe is told to try.
type probeRequest struct {
	Port    int      `json:"port"`
	DataDir string   `json:"data_dir"`
	Users   []string `json:"users"`
	Files   []string `json:"files"`
	List    bool     `json:"list"` // also try to list DataDir
}

// probeResult is one attempt: Err is empty when it worked.
type probeResult struct {
	What string `json:"what"`
	Err  string `json:"err"`
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(probeEnv); spec != "" {
		os.Exit(runProbe(spec))
	}
	os.Exit(m.Run())
}

func runProbe(spec string) int {
	var req probeRequest
	if err := json.Unmarshal([]byte(spec), &req); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	enc := json.NewEncoder(os.Stdout)
	report := func(what string, err error) {
		r := probeResult{What: what}
		if err != nil {
			r.Err = err.Error()
		}
		_ = enc.Encode(r)
	}
	try := func(what, connString string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, connString)
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(context.Background())
		}
		report(what, err)
	}
	for _, u := range req.Users {
		try("tcp as "+u+" without password", fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres sslmode=disable", req.Port, u))
		try("tcp as "+u+" with password "+u, fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres sslmode=disable", req.Port, u, u))
		try("socket as "+u, fmt.Sprintf("host=%s port=%d user=%s dbname=postgres", req.DataDir, req.Port, u))
	}
	for _, f := range req.Files {
		_, err := os.ReadFile(f)
		report("read "+f, err)
	}
	if req.List {
		_, err := os.ReadDir(req.DataDir)
		report("list "+req.DataDir, err)
	}
	return 0
}

// TestOtherLocalUsersCannotGetIn is the finding of issue 11: a private cluster must accept
// only its owner. Another OS user (nobody) tries TCP without a password, with its own
// name, and the Unix socket, and tries to read the password files; every attempt fails.
func TestOtherLocalUsersCannotGetIn(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the probe as another OS user")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := tempDir(t)
	dataDir := filepath.Join(base, "data")
	srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: dataDir, Fast: true, Stdout: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	ownerURL, err := srv.OwnerURL(ctx, "relay", "relay")
	if err != nil {
		t.Fatal(err)
	}
	// The owner's ways in work (else the probe's failures would prove nothing).
	if got := queryInt(t, ctx, srv.URL("postgres"), "select 1"); got != 1 {
		t.Fatal("superuser URL does not work")
	}
	if got := queryInt(t, ctx, ownerURL, "select 1"); got != 1 {
		t.Fatal("owner URL does not work")
	}

	files, _ := filepath.Glob(filepath.Join(dataDir, "*.password"))
	files = append(files, filepath.Join(dataDir, "database.url"))
	if len(files) < 2 {
		t.Fatalf("no password files in %s: %v", dataDir, files)
	}
	results := probeAs(t, "nobody", base, probeRequest{
		Port: srv.Port(), DataDir: dataDir, Users: []string{pglocal.Superuser, "relay", "nobody"}, Files: files, List: true,
	})
	if len(results) != 3*3+len(files)+1 {
		t.Fatalf("probe reported %d results: %+v", len(results), results)
	}
	for _, r := range results {
		if r.Err == "" {
			t.Errorf("as nobody: %s succeeded", r.What)
		} else {
			t.Logf("as nobody: %s: %s", r.What, r.Err)
		}
	}
	// The server's own OS user owns the data directory but needs no password, and
	// must not read them: the files are root's.
	asServer := probeAs(t, pglocal.ServerUser, base, probeRequest{DataDir: dataDir, Files: files})
	if len(asServer) != len(files) {
		t.Fatalf("probe as %s reported %d results: %+v", pglocal.ServerUser, len(asServer), asServer)
	}
	for _, r := range asServer {
		if r.Err == "" {
			t.Errorf("as %s: %s succeeded", pglocal.ServerUser, r.What)
		}
	}
}

// probeAs runs this test binary as OS user name with the probe request and collects what
// it reports. The binary is copied where that user can execute it.
func probeAs(t *testing.T, name, dir string, req probeRequest) []probeResult {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("look up user %s: %v", name, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "probe-"+name)
	copyFile(t, self, bin, 0o755)
	spec, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := osexec.Command(bin)
	cmd.Dir = "/"
	cmd.Env = []string{probeEnv + "=" + string(spec), "PATH=/usr/bin:/bin", "HOME=/nonexistent"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe as %s: %v\n%s", name, err, stderr.String())
	}
	var results []probeResult
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var r probeResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("probe output %q: %v", sc.Text(), err)
		}
		results = append(results, r)
	}
	return results
}

func copyFile(t *testing.T, from, to string, perm os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, perm); err != nil {
		t.Fatal(err)
	}
}

// TestOwnerRoleIsNotASuperuser: the relay connects as a role that owns its database and
// can migrate it, but is no superuser, so it cannot run programs on the server.
func TestOwnerRoleIsNotASuperuser(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: filepath.Join(tempDir(t), "data"), Fast: true, Stdout: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	ownerURL, err := srv.OwnerURL(ctx, "relay", "relay")
	if err != nil {
		t.Fatal(err)
	}
	if got := queryInt(t, ctx, ownerURL, "select (not rolsuper and not rolcreaterole and not rolcreatedb)::int from pg_roles where rolname = current_user"); got != 1 {
		t.Error("the owner role is a superuser or may create roles or databases")
	}
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	_, err = conn.Exec(ctx, "COPY (SELECT 1) TO PROGRAM 'true'")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" { // insufficient_privilege
		t.Errorf("COPY TO PROGRAM as the owner role: err = %v, want SQLSTATE 42501", err)
	}
	// What the relay's migrations and maintenance need.
	exec(t, ctx, ownerURL, `CREATE SCHEMA relay;
		CREATE TABLE relay.t (id int PRIMARY KEY);
		CREATE FUNCTION relay.f() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS 'SELECT 1';
		REVOKE ALL ON FUNCTION relay.f() FROM PUBLIC;`)
	exec(t, ctx, ownerURL, "VACUUM relay.t")
	// A second call returns a URL that still works (the password is kept, not reset).
	again, err := srv.OwnerURL(ctx, "relay", "relay")
	if err != nil {
		t.Fatal(err)
	}
	if again != ownerURL {
		t.Error("OwnerURL changed between two calls on the same running server")
	}
	if got := queryInt(t, ctx, ownerURL, "select count(*)::int from pg_tables where schemaname = 'relay' and tableowner = 'relay'"); got != 1 {
		t.Errorf("relay-owned tables = %d, want 1", got)
	}
}

// oldTrustCluster makes what an older relay left behind: a cluster whose pg_hba.conf
// trusts every local connection, with no password files, and a database "relay" whose
// schema the superuser created. It returns the data directory, with the server stopped.
func oldTrustCluster(t *testing.T, ctx context.Context) string {
	t.Helper()
	dataDir := filepath.Join(tempDir(t), "data")
	srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: dataDir, Fast: true, Stdout: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	if err := srv.CreateDatabase(ctx, "relay", ""); err != nil {
		t.Fatal(err)
	}
	if err := schema.Migrate(ctx, srv.URL("relay")); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	trust := "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
	if err := os.WriteFile(filepath.Join(dataDir, "pg_hba.conf"), []byte(trust), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"postgres.password", "relay.password", "database.url"} {
		if err := os.Remove(filepath.Join(dataDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	return dataDir
}

// TestOldTrustClusterIsUpgraded: a data directory made by the trust setup is upgraded in
// place, stopped or running: afterwards nothing gets in without a password, the superuser
// has one, and the relay's role owns the existing schema and can migrate and use it.
func TestOldTrustClusterIsUpgraded(t *testing.T) {
	// Not parallel: it starts a cluster with pg_ctl and restarts it through the upgrade.
	for _, running := range []bool{false, true} {
		t.Run(fmt.Sprintf("running=%v", running), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			dataDir := oldTrustCluster(t, ctx)
			noPassword := ""
			if running {
				pgCtl(t, dataDir, "start", "-w", "-l", filepath.Join(dataDir, "server.log"))
				port := pidFilePort(t, dataDir)
				noPassword = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
				if got := queryInt(t, ctx, noPassword, "select 1"); got != 1 {
					t.Fatal("the old cluster does not trust")
				}
			}
			srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: dataDir, Fast: true, Stdout: os.Stderr})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Stop(context.Background()) })
			if srv.Attached() != running {
				t.Fatalf("Attached() = %v, want %v", srv.Attached(), running)
			}
			noPassword = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", srv.Port())
			if conn, err := pgx.Connect(ctx, noPassword); err == nil {
				_ = conn.Close(ctx)
				t.Fatal("after the upgrade the superuser still gets in without a password")
			}
			owner, err := srv.OwnerURL(ctx, "relay", "relay")
			if err != nil {
				t.Fatal(err)
			}
			if err := schema.Migrate(ctx, owner); err != nil {
				t.Fatalf("migrate as the owner role after the upgrade: %v", err)
			}
			exec(t, ctx, owner, `INSERT INTO relay.webhooks (event, target_url) VALUES ('post.published', 'https://example.com/h');
				SELECT relay.emit('post.published', '{"post":{"current":{},"previous":{}}}')`)
			exec(t, ctx, owner, "VACUUM relay.deliveries")
			if got := queryInt(t, ctx, srv.URL("relay"), `SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE n.nspname = 'relay' AND c.relowner <> 'relay'::regrole`); got != 0 {
				t.Errorf("%d relations in schema relay are not owned by the relay role", got)
			}
			b, err := os.ReadFile(filepath.Join(dataDir, "pg_hba.conf"))
			if err != nil || strings.Contains(string(b), "trust") {
				t.Errorf("pg_hba.conf still trusts (%v):\n%s", err, b)
			}
		})
	}
}

func pgCtl(t *testing.T, dataDir string, args ...string) {
	t.Helper()
	bin, err := pglocal.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := osexec.Command(filepath.Join(bin, "pg_ctl"), append(args, "-D", dataDir)...)
	cmd.Dir = "/"
	if os.Geteuid() == 0 {
		u, err := user.Lookup(pglocal.ServerUser)
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl %v: %v\n%s", args, err, out)
	}
}

func pidFilePort(t *testing.T, dataDir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestOwnerURLConcurrently: relays and CLI commands starting together on a new data
// directory each ask for the owner's URL; every URL they get must work.
func TestOwnerURLConcurrently(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: filepath.Join(tempDir(t), "data"), Fast: true, Stdout: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	urls := make([]string, 6)
	errs := make([]error, len(urls))
	var wg sync.WaitGroup
	for i := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			urls[i], errs[i] = srv.OwnerURL(ctx, "relay", "relay")
		}()
	}
	wg.Wait()
	for i, u := range urls {
		if errs[i] != nil {
			t.Errorf("OwnerURL #%d: %v", i, errs[i])
			continue
		}
		if got := queryInt(t, ctx, u, "select 1"); got != 1 {
			t.Errorf("URL #%d does not work", i)
		}
	}
}
