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
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrations embed.FS

// VersionTable records applied migrations. It lives in the relay schema so that one
// database can host several products without their migration tables colliding.
const VersionTable = "relay.schema_migrations"

// lockID is the advisory lock (shared by every relay) that serialises migrations.
const lockID int64 = 0x72656c6179 // "relay"

// provider builds goose's migrator. Up serialises relays itself (withLock): goose's own
// session locker polls every few seconds, which makes a second relay starting at the
// same moment wait for nothing.
func provider(db *sql.DB) (*goose.Provider, error) {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("schema: open embedded migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(VersionTable),
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

// withLock runs fn holding the relays' migration lock: a session advisory lock on a
// connection of its own, waited for (not polled), released when fn returns.
func withLock(ctx context.Context, db *sql.DB, fn func() error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("schema: connect: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, lockID); err != nil {
		return fmt.Errorf("schema: take the migration lock: %w", err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, lockID)
	}()
	return fn()
}

// Migrate applies every pending migration to the database at databaseURL.
func Migrate(ctx context.Context, databaseURL string) error {
	_, err := Up(ctx, databaseURL)
	return err
}

// Up applies every pending migration to the database at databaseURL and returns the
// versions it applied (none when the database was current).
func Up(ctx context.Context, databaseURL string) ([]int64, error) {
	return UpTo(ctx, databaseURL, math.MaxInt64)
}

// UpTo is Up stopping after version: what an upgrade test starts from, a database as an
// older relay left it.
func UpTo(ctx context.Context, databaseURL string, version int64) ([]int64, error) {
	db, err := open(databaseURL)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	p, err := provider(db)
	if err != nil {
		return nil, err
	}
	var applied []int64
	err = withLock(ctx, db, func() error {
		// The schema holds goose's version table, so it must exist before goose looks.
		if _, err := db.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS relay`); err != nil {
			return fmt.Errorf("schema: create schema relay: %w", err)
		}
		results, err := p.UpTo(ctx, version)
		if err != nil {
			return fmt.Errorf("schema: migrate: %w", err)
		}
		for _, r := range results {
			applied = append(applied, r.Source.Version)
		}
		return nil
	})
	return applied, err
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
