// Package schema holds the relay's versioned SQL migrations, embedded in the binary.
//
// Migrate is safe to call from several relays starting at once: the migrations run under
// a PostgreSQL advisory lock, and already-applied versions are skipped.
package schema

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// VersionTable records applied migrations. It lives in the relay schema so that one
// database can host several products without their migration tables colliding.
const VersionTable = "relay.schema_migrations"

// lockID is the advisory lock (shared by every relay) that serialises migrations.
const lockID int64 = 0x72656c6179 // "relay"

func provider(db *sql.DB) (*goose.Provider, error) {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("schema: open embedded migrations: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID))
	if err != nil {
		return nil, fmt.Errorf("schema: create migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(VersionTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("schema: create migration provider: %w", err)
	}
	return p, nil
}

func open(databaseURL string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("schema: parse database URL: %w", err)
	}
	return stdlib.OpenDB(*cfg), nil
}

// ensureSchema creates the relay schema that holds goose's version table. It runs under
// the same lock as the migrations because CREATE SCHEMA IF NOT EXISTS is not safe against
// a concurrent twin (it can fail with a unique violation).
func ensureSchema(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("schema: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, lockID); err != nil {
		return fmt.Errorf("schema: lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS relay`); err != nil {
		return fmt.Errorf("schema: create schema relay: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("schema: commit: %w", err)
	}
	return nil
}

// Migrate applies every pending migration to the database at databaseURL.
func Migrate(ctx context.Context, databaseURL string) error {
	_, err := Up(ctx, databaseURL)
	return err
}

// Up applies every pending migration to the database at databaseURL and returns the
// versions it applied (none when the database was current).
func Up(ctx context.Context, databaseURL string) ([]int64, error) {
	db, err := open(databaseURL)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := ensureSchema(ctx, db); err != nil {
		return nil, err
	}
	p, err := provider(db)
	if err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("schema: migrate: %w", err)
	}
	applied := make([]int64, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// ErrOutdated is returned by Check when the database lacks migrations this binary has.
var ErrOutdated = errors.New("schema: database is not migrated to this relay's version")

// Check reports whether the database has every migration this binary knows; /readyz
// uses it so a relay never serves an old or foreign schema.
func Check(ctx context.Context, db *sql.DB) error {
	p, err := provider(db)
	if err != nil {
		return err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("schema: check version: %w", err)
	}
	if pending {
		return ErrOutdated
	}
	return nil
}

// Latest is the newest migration version embedded in this binary.
func Latest() (int64, error) {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return 0, err
	}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return 0, err
	}
	var latest int64
	for _, e := range entries {
		var v int64
		if _, err := fmt.Sscanf(e.Name(), "%d_", &v); err == nil && v > latest {
			latest = v
		}
	}
	return latest, nil
}
