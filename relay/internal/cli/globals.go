package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/relayhq/relay/relay/internal/apikey"
	"github.com/relayhq/relay/relay/internal/ghostsite"
	"github.com/relayhq/relay/relay/internal/sealbox"
	"github.com/relayhq/relay/relay/pglocal"
	"github.com/relayhq/relay/schema"
)

// Globals are the settings every subcommand shares.
type Globals struct {
	DatabaseURL string        `name:"database-url" env:"DATABASE_URL" help:"PostgreSQL URL. Unset: a private PostgreSQL is started from the local server binaries in --data-dir."`
	DataDir     string        `name:"data-dir" env:"RELAY_DATA_DIR" default:"./.relay" help:"Where the private PostgreSQL keeps its data when DATABASE_URL is unset."`
	LogFormat   logFormat     `name:"log-format" env:"RELAY_LOG_FORMAT" default:"" help:"json or console (default: console on a terminal, else json)."`
	LogLevel    zerolog.Level `name:"log-level" env:"RELAY_LOG_LEVEL" default:"info" help:"trace, debug, info, warn or error."`
	PGBinDir    string        `name:"pg-bindir" env:"PG_BINDIR" default:"" help:"Directory of the PostgreSQL server binaries for the private PostgreSQL (default: initdb on PATH, pg_config --bindir, /usr/lib/postgresql/*/bin)."`
	// KeyEncryptionKey seals Admin API key secrets in the database (AES-256-GCM). Prefer
	// the environment variable: a flag's value shows in the process list.
	KeyEncryptionKey string `name:"key-encryption-key" env:"RELAY_KEY_ENCRYPTION_KEY" default:"" help:"32 random bytes (64 hex or base64) that encrypt Admin API key secrets at rest. Unset: stored in plaintext, as Ghost does."`
}

// logger builds the process logger: JSON lines by default, a human console when asked
// for or when stderr is a terminal.
func (g *Globals) logger(w io.Writer) zerolog.Logger {
	console := g.LogFormat == "console"
	if g.LogFormat == "" {
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			console = true
		}
	}
	if console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(g.LogLevel).With().Timestamp().Logger()
}

// withDB runs fn with the database of a one-shot command (no migration: a command never
// changes the schema behind a running relay's back), and lets go of it afterwards. The
// command's answer is its output: how it reached the database is said at debug only.
func (g *Globals) withDB(ctx context.Context, fn func(*database) error) error {
	db, err := g.connect(ctx, g.logger(os.Stderr), connectOptions{detail: zerolog.DebugLevel})
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(db)
}

// connectOptions say what a command needs of the database.
type connectOptions struct {
	// migrate applies pending migrations first (relay run, relay migrate).
	migrate bool
	// detail is the level of the lines saying which private PostgreSQL the command uses
	// and which migrations it applied: info for `relay run`, whose log they belong in;
	// debug for a one-shot command, which stays quiet unless something is wrong.
	detail zerolog.Level
}

// database is an open pool plus how to let go of it (and of the private server if this
// command started one).
type database struct {
	URL  string
	Pool *pgxpool.Pool
	// Migrated are the migration versions connect applied.
	Migrated []int64
	close    func()
}

func (d *database) Close() { d.close() }

// connect opens DATABASE_URL, or starts (or attaches to) the private PostgreSQL in
// RELAY_DATA_DIR.
func (g *Globals) connect(ctx context.Context, log zerolog.Logger, opts connectOptions) (*database, error) {
	url := g.DatabaseURL
	stopServer := func() {}
	if url == "" {
		dir, err := filepath.Abs(g.DataDir)
		if err != nil {
			return nil, fmt.Errorf("RELAY_DATA_DIR (--data-dir): %w", err)
		}
		log.WithLevel(opts.detail).Str("data_dir", dir).Msg("DATABASE_URL is unset: using a private PostgreSQL from the local server binaries")
		srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: dir, BinDir: g.PGBinDir})
		if err != nil {
			return nil, fmt.Errorf("start private PostgreSQL in %s: %w", dir, err)
		}
		stopServer = func() {
			if srv.Attached() {
				return // another relay process started it and still uses it
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := srv.Stop(ctx); err != nil {
				log.Warn().Err(err).Msg("stopping private PostgreSQL")
			}
		}
		// The relay's own role owns database and schema "relay"; the superuser is only
		// for making it.
		url, err = srv.OwnerURL(ctx, "relay", "relay")
		if err != nil {
			stopServer()
			return nil, err
		}
		log.WithLevel(opts.detail).Int("port", srv.Port()).Str("database_url", redactDatabaseURL(url)).
			Str("database_url_file", filepath.Join(dir, pglocal.URLFile)).Bool("attached", srv.Attached()).
			Msg("private PostgreSQL is running")
	}
	var applied []int64
	if opts.migrate {
		var err error
		if applied, err = schema.Up(ctx, url); err != nil {
			stopServer()
			return nil, err
		}
		if len(applied) > 0 {
			log.WithLevel(opts.detail).Ints64("versions", applied).Msg("database migrated")
		}
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		stopServer()
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "relay"
	if cfg.MaxConns < 16 {
		cfg.MaxConns = 16
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		stopServer()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		stopServer()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return &database{URL: url, Pool: pool, Migrated: applied, close: func() { pool.Close(); stopServer() }}, nil
}

// kek is the configured key-encryption key (nil when none is set).
func (g *Globals) kek() ([]byte, error) {
	kek, err := sealbox.ParseKEK(g.KeyEncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("RELAY_KEY_ENCRYPTION_KEY (--key-encryption-key): %w", err)
	}
	return kek, nil
}

// ghostSites opens the connected Ghost sites with the configured key-encryption key.
func (g *Globals) ghostSites(db *database) (*ghostsite.Store, error) {
	kek, err := g.kek()
	if err != nil {
		return nil, err
	}
	box, err := sealbox.New(kek)
	if err != nil {
		return nil, err
	}
	return &ghostsite.Store{Pool: db.Pool, Box: box}, nil
}

// keyStore opens the Admin API key store with the configured key-encryption key.
func (g *Globals) keyStore(db *database) (*apikey.Store, error) {
	kek, err := g.kek()
	if err != nil {
		return nil, err
	}
	return apikey.NewStore(db.Pool, kek)
}
