// Package testutil gives tests a PostgreSQL database of their own and a recording webhook
// receiver. Packages that use it call Main from TestMain so that the shared cluster is
// stopped and removed when the test binary ends.
//
// Databases come from one PostgreSQL cluster per test binary, started lazily from the
// local server binaries (see package pglocal), or from the server at TEST_DATABASE_URL when
// that is set (its user must be allowed CREATE DATABASE and CREATE ROLE).
package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/relayhq/relay/relay/pglocal"
	"github.com/relayhq/relay/schema"
)

// EnvDatabaseURL names the variable that points tests at an existing server instead of a
// private cluster.
const EnvDatabaseURL = "TEST_DATABASE_URL"

// setupTimeout bounds cluster start, migration and database creation. It is generous
// because CI machines are small and several test binaries start clusters at once.
const setupTimeout = 2 * time.Minute

// DB is a freshly created, migrated database that belongs to one test.
type DB struct {
	URL  string
	Pool *pgxpool.Pool
	Name string
}

// shared is the per-process state: the lazily started cluster and the migrated template.
// It is the only package-level mutable state, guarded by its mutexes.
var shared struct {
	clusterMu  sync.Mutex
	cluster    *pglocal.Server
	clusterDir string
	clusterErr error

	tmplMu   sync.Mutex
	tmpl     string // name of the migrated template database, once made
	tmplBase string // admin URL of the server holding tmpl
	tmplErr  error
}

// Main runs the tests, then runs cleanups (other shared fixtures, such as
// ghost.StopShared), stops the shared cluster (if this process started one) and drops
// the template database, and exits with the tests' code. Call it from TestMain. A
// failed cleanup fails the run.
func Main(m *testing.M, cleanups ...func() error) {
	code := m.Run()
	errs := make([]error, 0, len(cleanups)+1)
	for _, c := range cleanups {
		errs = append(errs, c())
	}
	errs = append(errs, shutdown())
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(os.Stderr, "testutil: cleanup: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	var errs []error

	shared.tmplMu.Lock()
	// The template only needs dropping on a server that outlives us.
	if shared.tmpl != "" && os.Getenv(EnvDatabaseURL) != "" {
		if err := dropDatabase(ctx, shared.tmplBase, shared.tmpl); err != nil {
			errs = append(errs, err)
		}
	}
	shared.tmpl, shared.tmplErr = "", nil
	shared.tmplMu.Unlock()

	shared.clusterMu.Lock()
	defer shared.clusterMu.Unlock()
	if shared.cluster != nil {
		if err := shared.cluster.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
		shared.cluster = nil
	}
	if shared.clusterDir != "" {
		if err := os.RemoveAll(shared.clusterDir); err != nil {
			errs = append(errs, fmt.Errorf("remove cluster dir: %w", err))
		}
		shared.clusterDir = ""
	}
	shared.clusterErr = nil
	return errors.Join(errs...)
}

// Cluster returns this process's shared private cluster, starting it on first use. It is
// a local cluster even when TEST_DATABASE_URL is set, so tests that need one always get
// one. Do not stop, restart or kill it: other tests use it; take NewCluster for that.
func Cluster(t testing.TB) *pglocal.Server {
	t.Helper()
	srv, err := sharedCluster()
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	return srv
}

func sharedCluster() (*pglocal.Server, error) {
	shared.clusterMu.Lock()
	defer shared.clusterMu.Unlock()
	if shared.cluster != nil || shared.clusterErr != nil {
		return shared.cluster, shared.clusterErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	srv, dir, err := startCluster(ctx, nil)
	if err != nil {
		// Remember the failure: retrying a broken initdb in every test only multiplies
		// the wait and the noise.
		shared.clusterErr = err
		return nil, err
	}
	shared.cluster, shared.clusterDir = srv, dir
	return srv, nil
}

// NewCluster starts a dedicated cluster for a test that stops, restarts or kills
// PostgreSQL. It is stopped and removed in t.Cleanup. Unlike the shared cluster it commits
// synchronously, so a Kill loses no transaction that a client saw commit, as with a
// production server; otherwise fault tests would report phantom redeliveries.
func NewCluster(t testing.TB) *pglocal.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	srv, dir, err := startCluster(ctx, map[string]string{"synchronous_commit": "on"})
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("testutil: stop private cluster: %v", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("testutil: remove private cluster: %v", err)
		}
	})
	return srv
}

// NewMigratedCluster is NewCluster with a migrated database "relay" on it, for tests
// that stop, restart or kill PostgreSQL under a relay.
func NewMigratedCluster(t testing.TB) (*pglocal.Server, *DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	cluster := NewCluster(t)
	if err := cluster.CreateDatabase(ctx, "relay", ""); err != nil {
		t.Fatalf("testutil: %v", err)
	}
	url := cluster.URL("relay")
	if err := schema.Migrate(ctx, url); err != nil {
		t.Fatalf("testutil: %v", err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	t.Cleanup(pool.Close)
	return cluster, &DB{URL: url, Pool: pool, Name: "relay"}
}

// startCluster starts a Fast cluster in a new directory under /tmp. Not t.TempDir: as root
// the server runs as another user, who cannot traverse t.TempDir's 0700 directories.
func startCluster(ctx context.Context, settings map[string]string) (*pglocal.Server, string, error) {
	dir, err := os.MkdirTemp("/tmp", "relay-test-pg-*")
	if err != nil {
		return nil, "", fmt.Errorf("create cluster dir: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", fmt.Errorf("chmod cluster dir: %w", err)
	}
	srv, err := pglocal.Start(ctx, pglocal.Options{
		DataDir: dir + "/data", Fast: true, Stdout: os.Stderr, Settings: settings,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", fmt.Errorf("start PostgreSQL for tests: %w", err)
	}
	return srv, dir, nil
}

// adminURL is a connection string to a maintenance database of the server that holds the
// test databases.
func adminURL() (string, error) {
	if u := os.Getenv(EnvDatabaseURL); u != "" {
		return u, nil
	}
	srv, err := sharedCluster()
	if err != nil {
		return "", err
	}
	return srv.URL("postgres"), nil
}

// NewDB creates a fresh database holding the relay schema, for this test alone. The pool
// is closed and the database dropped in t.Cleanup.
func NewDB(t testing.TB) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	admin, tmpl, err := template(ctx)
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	return newDB(ctx, t, admin, tmpl)
}

// NewEmptyDB creates a fresh database without the relay schema (for migration tests).
func NewEmptyDB(t testing.TB) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	admin, err := adminURL()
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	return newDB(ctx, t, admin, "")
}

func newDB(ctx context.Context, t testing.TB, admin, tmpl string) *DB {
	t.Helper()
	db, drop, err := createDB(ctx, admin, tmpl)
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Errorf("testutil: %v", err)
		}
	})
	return db
}

// CreateDB is NewDB for code that has no testing.TB, such as the setup of runnable
// examples in TestMain: the caller drops the database with drop.
func CreateDB(ctx context.Context) (db *DB, drop func() error, err error) {
	admin, tmpl, err := template(ctx)
	if err != nil {
		return nil, nil, err
	}
	return createDB(ctx, admin, tmpl)
}

func createDB(ctx context.Context, admin, tmpl string) (*DB, func() error, error) {
	name := "t_" + randomHex()
	if err := createDatabase(ctx, admin, name, tmpl); err != nil {
		return nil, nil, err
	}
	dbURL, err := withDatabase(admin, name)
	if err != nil {
		return nil, nil, err
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		_ = dropDatabase(ctx, admin, name)
		return nil, nil, fmt.Errorf("open pool on %s: %w", name, err)
	}
	drop := func() error {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		return dropDatabase(ctx, admin, name)
	}
	return &DB{URL: dbURL, Pool: pool, Name: name}, drop, nil
}

// template returns the admin URL and the name of a database that holds the migrated
// schema, creating it on first use. Copying it is much faster than migrating every test
// database, and copying needs the template to be idle, hence the one-time setup under a
// lock with every connection to it closed before anyone copies.
func template(ctx context.Context) (admin, tmpl string, err error) {
	shared.tmplMu.Lock()
	defer shared.tmplMu.Unlock()
	if shared.tmpl != "" || shared.tmplErr != nil {
		return shared.tmplBase, shared.tmpl, shared.tmplErr
	}
	admin, err = adminURL()
	if err != nil {
		shared.tmplErr = err
		return "", "", err
	}
	name := "relay_tmpl_" + randomHex()
	if err := createDatabase(ctx, admin, name, ""); err != nil {
		shared.tmplErr = err
		return "", "", err
	}
	tmplURL, err := withDatabase(admin, name)
	if err == nil {
		err = schema.Migrate(ctx, tmplURL)
		if err != nil {
			err = fmt.Errorf("migrate template database %s: %w", name, err)
		}
	}
	if err != nil {
		_ = dropDatabase(ctx, admin, name)
		shared.tmplErr = err
		return "", "", err
	}
	shared.tmpl, shared.tmplBase = name, admin
	return admin, name, nil
}

// createDatabase runs CREATE DATABASE on the server at admin. A copy can briefly fail with
// "being accessed by other users" while a backend of the migration is still exiting, so
// that error is retried.
func createDatabase(ctx context.Context, admin, name, tmpl string) error {
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if tmpl != "" {
		sql += " TEMPLATE " + pgx.Identifier{tmpl}.Sanitize()
	}
	for attempt := 1; ; attempt++ {
		err := adminExec(ctx, admin, sql)
		if err == nil {
			return nil
		}
		var pgErr *pgconn.PgError
		if attempt >= 5 || !errors.As(err, &pgErr) || pgErr.Code != "55006" { // object_in_use
			return fmt.Errorf("create database %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create database %s: %w", name, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// dropDatabase forces out connections the test left open (a leaked relay goroutine, say)
// so that cleanup never hangs or fails on them.
func dropDatabase(ctx context.Context, admin, name string) error {
	err := adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

func adminExec(ctx context.Context, admin, sql string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase points a connection string (URL or key=value form) at another database.
func withDatabase(connString, dbname string) (string, error) {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", EnvDatabaseURL, err)
		}
		u.Path = "/" + dbname
		u.RawPath = ""
		return u.String(), nil
	}
	// In key=value form the last dbname wins.
	quoted := strings.ReplaceAll(strings.ReplaceAll(dbname, `\`, `\\`), `'`, `\'`)
	return connString + " dbname='" + quoted + "'", nil
}

func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// CheckGoroutines fails the test binary when goroutines outlive its tests: give it to
// Main after the other cleanups. Every goroutine a test starts, directly or through the
// code under test, must have ended by then.
func CheckGoroutines() error {
	if err := goleak.Find(); err != nil {
		return fmt.Errorf("goroutines outlived the tests: %w", err)
	}
	return nil
}
