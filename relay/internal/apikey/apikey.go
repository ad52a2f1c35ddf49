// Package apikey keeps the Admin API keys (relay.api_keys) and the integrations they
// belong to (relay.integrations), in Ghost's model and format: a key is "id:secret", 24
// hex characters and 64 hex characters, the hex-decoded secret is the HMAC-SHA256 key of
// the JWTs a client signs with it (see package server), and every key belongs to an
// integration, which owns the webhooks created with the key.
//
// Because the secret is a signing key rather than a password, the relay must be able
// to recover it, so it cannot be stored as a hash. With a key-encryption key
// (RELAY_KEY_ENCRYPTION_KEY) the secret is sealed with AES-256-GCM and a reader of the
// database alone cannot mint tokens; without one it is stored in plaintext, as Ghost
// stores its own keys.
package apikey

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relayhq/relay/relay/internal/sealbox"
)

// Key is a stored key, without its secret.
type Key struct {
	ID          string      `json:"id"`
	Name        string      `json:"name"`
	Integration Integration `json:"integration"`
	Encrypted   bool        `json:"encrypted"`
	CreatedAt   time.Time   `json:"created_at"`
	RevokedAt   *time.Time  `json:"revoked_at"`
	LastUsedAt  *time.Time  `json:"last_used_at"`
}

// Integration is what a key acts as, Ghost's integrations row: webhooks created with any
// of its keys are its own.
type Integration struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Name string `json:"name"`
	Slug string `json:"slug"`
}

// DefaultName names the integration of a key created without a name, as Ghost's admin
// screen suggests for a new custom integration.
const DefaultName = "Custom integration"

// DefaultConsoleName names a console key created without a name.
const DefaultConsoleName = "Console"

// Integration types. A custom integration's keys use the Admin and audit APIs, acting
// as their integration (its own webhooks only, in the Admin API). A console
// integration's keys sign in to the operator console (/ui/) and do nothing else: the
// APIs refuse them, and a custom key cannot sign in, so an integration never gains the
// console's operator powers.
const (
	TypeCustom  = "custom"
	TypeConsole = "console"
)

// Active is what verifying a token needs from an active key: the HMAC key and the
// integration the request then acts as.
type Active struct {
	Secret        []byte
	IntegrationID string
}

var (
	// ErrNotFound is returned for an id that names no key.
	ErrNotFound = errors.New("API key not found")
	// ErrUnknownKey is returned by Secret for a key that does not exist or is revoked;
	// the two are not told apart to a caller presenting a token.
	ErrUnknownKey = errors.New("unknown or revoked API key")
	// ErrNoKEK means the key was sealed but this relay has no key-encryption key.
	ErrNoKEK = sealbox.ErrNoKEK
	// ErrWrongKEK means the key was sealed under another key-encryption key.
	ErrWrongKEK = sealbox.ErrWrongKEK
	// ErrNotConsoleKey is returned by SignIn for a valid key of a custom integration:
	// only console keys sign in.
	ErrNotConsoleKey = errors.New("this Admin API key belongs to an integration; only console keys (relay keys create --console) sign in to the console")
)

// IDPattern is the shape of a key id (and of a JWT's kid): Ghost's 24-hex ObjectId.
var IDPattern = regexp.MustCompile(`^[0-9a-f]{24}$`)

// Store reads and writes relay.api_keys.
type Store struct {
	pool *pgxpool.Pool
	box  *sealbox.Box // nil: no key-encryption key
}

// NewStore returns a Store; kek (from sealbox.ParseKEK) may be nil, and then new keys
// are stored in plaintext and sealed ones cannot be used.
func NewStore(pool *pgxpool.Pool, kek []byte) (*Store, error) {
	box, err := sealbox.New(kek)
	if err != nil {
		return nil, err
	}
	return &Store{pool: pool, box: box}, nil
}

// Encrypts reports whether new keys are sealed.
func (s *Store) Encrypts() bool { return s.box.Seals() }

// newID makes a Ghost-style ObjectId: 4 bytes of seconds, then 8 random bytes.
func newID(now time.Time) (string, error) {
	b := make([]byte, 12)
	binary.BigEndian.PutUint32(b, uint32(now.Unix()))
	if _, err := rand.Read(b[4:]); err != nil {
		return "", fmt.Errorf("generate key id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Create makes an integration named name (DefaultName when empty) with one Admin API key,
// as Ghost does for a new custom integration, and returns the key with the full
// "id:secret" string, which is never available again: only its holder can use it from
// then on.
func (s *Store) Create(ctx context.Context, name string) (Key, string, error) {
	if name == "" {
		name = DefaultName
	}
	return s.create(ctx, name, TypeCustom)
}

// CreateConsole makes a console integration named name (DefaultConsoleName when empty)
// with one key that signs in to the console, and returns it as Create does.
func (s *Store) CreateConsole(ctx context.Context, name string) (Key, string, error) {
	if name == "" {
		name = DefaultConsoleName
	}
	return s.create(ctx, name, TypeConsole)
}

func (s *Store) create(ctx context.Context, name, typ string) (Key, string, error) {
	if len(name) > 191 {
		return Key{}, "", errors.New("name must be at most 191 characters")
	}
	id, err := newID(time.Now())
	if err != nil {
		return Key{}, "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return Key{}, "", fmt.Errorf("generate key secret: %w", err)
	}
	secret := hex.EncodeToString(raw)
	var plain *string
	var sealed []byte
	var fp *string
	if s.box.Seals() {
		// The key id is the additional data: a sealed secret copied to another row
		// does not open.
		if sealed, err = s.box.Seal(raw, id); err != nil {
			return Key{}, "", err
		}
		f := s.box.Fingerprint()
		fp = &f
	} else {
		plain = &secret
	}
	k := Key{ID: id, Name: name, Encrypted: sealed != nil}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		in, err := createIntegration(ctx, tx, name, typ)
		if err != nil {
			return err
		}
		k.Integration = in
		return tx.QueryRow(ctx, `INSERT INTO relay.api_keys (id, name, integration_id, secret_plain, secret_sealed, kek_fingerprint)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`, id, name, in.ID, plain, sealed, fp).Scan(&k.CreatedAt)
	})
	if err != nil {
		return Key{}, "", fmt.Errorf("store API key: %w", err)
	}
	return k, id + ":" + secret, nil
}

// createIntegration inserts an integration of type typ with a slug of its name that no
// other integration has: "my-site", then "my-site-2", ... as Ghost picks slugs.
func createIntegration(ctx context.Context, tx pgx.Tx, name, typ string) (Integration, error) {
	base := Slug(name)
	for n := 1; n <= 1000; n++ {
		slug := base
		if n > 1 {
			slug = fmt.Sprintf("%s-%d", base, n)
		}
		in := Integration{Type: typ, Name: name, Slug: slug}
		err := tx.QueryRow(ctx, `INSERT INTO relay.integrations (name, slug, type) VALUES ($1, $2, $3)
			ON CONFLICT (slug) DO NOTHING RETURNING id`, name, slug, typ).Scan(&in.ID)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // slug taken
		}
		if err != nil {
			return Integration{}, fmt.Errorf("create integration: %w", err)
		}
		return in, nil
	}
	return Integration{}, fmt.Errorf("create integration: no free slug for %q", base)
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

// Slug is a URL-safe form of an integration name: lowercase ASCII letters and digits
// separated by single dashes (the CHECK on relay.integrations.slug).
func Slug(name string) string {
	s := strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if len(s) > 160 {
		s = strings.TrimRight(s[:160], "-")
	}
	if s == "" {
		return "custom-integration"
	}
	return s
}

const keyColumns = `k.id, k.name, i.id, i.type, i.name, i.slug, k.secret_sealed IS NOT NULL, k.created_at, k.revoked_at, k.last_used_at`

const keyFrom = ` FROM relay.api_keys k JOIN relay.integrations i ON i.id = k.integration_id`

func scanKey(row pgx.Row) (Key, error) {
	var k Key
	err := row.Scan(&k.ID, &k.Name, &k.Integration.ID, &k.Integration.Type, &k.Integration.Name, &k.Integration.Slug,
		&k.Encrypted, &k.CreatedAt, &k.RevokedAt, &k.LastUsedAt)
	return k, err
}

// List returns every key with its integration, revoked ones included, oldest first.
func (s *Store) List(ctx context.Context) ([]Key, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyColumns+keyFrom+` ORDER BY k.created_at, k.id`)
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	return keys, nil
}

// Revoked is what Revoke did.
type Revoked struct {
	Key
	// WebhooksRemoved counts the integration's webhooks this revocation deleted.
	WebhooksRemoved int64
}

// Revoke ends a key's integration at once, as deleting an integration does in Ghost:
// the next request signed with any of its keys is refused, and its webhooks are deleted
// (their deliveries and attempts stay for audit; pending deliveries are cancelled by the
// trigger on relay.webhooks). Revoking again keeps the first revocation time.
func (s *Store) Revoke(ctx context.Context, id string) (Revoked, error) {
	var out Revoked
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var integrationID string
		err := tx.QueryRow(ctx, `SELECT integration_id FROM relay.api_keys WHERE id = $1 FOR UPDATE`, id).Scan(&integrationID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE relay.api_keys SET revoked_at = coalesce(revoked_at, now())
			WHERE integration_id = $1`, integrationID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM relay.webhooks WHERE integration_id = $1`, integrationID)
		if err != nil {
			return err
		}
		out.WebhooksRemoved = tag.RowsAffected()
		out.Key, err = scanKey(tx.QueryRow(ctx, `SELECT `+keyColumns+keyFrom+` WHERE k.id = $1`, id))
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Revoked{}, ErrNotFound
	}
	if err != nil {
		return Revoked{}, fmt.Errorf("revoke API key %s: %w", id, err)
	}
	return out, nil
}

// Secret returns the HMAC key (the hex-decoded secret) of an active key.
func (s *Store) Secret(ctx context.Context, id string) ([]byte, error) {
	a, err := s.Lookup(ctx, id)
	return a.Secret, err
}

// Lookup returns the HMAC key (the hex-decoded secret) and the integration of an active
// key of a custom integration, for verifying a token that names it. It reads the
// database on every call, so a revocation takes effect on the very next request. A
// console key is unknown here: it signs in to the console only.
func (s *Store) Lookup(ctx context.Context, id string) (Active, error) {
	a, typ, err := s.active(ctx, id)
	if err != nil {
		return Active{}, err
	}
	if typ != TypeCustom {
		return Active{}, ErrUnknownKey
	}
	return a, nil
}

// active reads an active key's HMAC key and its integration's id and type.
func (s *Store) active(ctx context.Context, id string) (Active, string, error) {
	if !IDPattern.MatchString(id) {
		return Active{}, "", ErrUnknownKey
	}
	var plain, fp *string
	var sealed []byte
	var integrationID, typ string
	err := s.pool.QueryRow(ctx, `SELECT k.secret_plain, k.secret_sealed, k.kek_fingerprint, k.integration_id, i.type`+keyFrom+`
		WHERE k.id = $1 AND k.revoked_at IS NULL`, id).Scan(&plain, &sealed, &fp, &integrationID, &typ)
	if errors.Is(err, pgx.ErrNoRows) {
		return Active{}, "", ErrUnknownKey
	}
	if err != nil {
		return Active{}, "", fmt.Errorf("read API key %s: %w", id, err)
	}
	if plain != nil {
		b, err := hex.DecodeString(*plain)
		if err != nil {
			return Active{}, "", fmt.Errorf("API key %s: stored secret is not hex: %w", id, err)
		}
		return Active{Secret: b, IntegrationID: integrationID}, typ, nil
	}
	if fp == nil {
		return Active{}, "", fmt.Errorf("API key %s: sealed secret without a key fingerprint", id)
	}
	raw, err := s.box.Open(sealed, *fp, id)
	if err != nil {
		return Active{}, "", fmt.Errorf("API key %s: %w", id, err)
	}
	return Active{Secret: raw, IntegrationID: integrationID}, typ, nil
}

// SignIn checks a full key as its holder pastes it ("id:secret") for the console: it
// must be an active key whose secret matches (compared in constant time) and whose
// integration is a console one. A wrong or unknown key is ErrUnknownKey, a valid key of
// a custom integration ErrNotConsoleKey.
func (s *Store) SignIn(ctx context.Context, presented string) (Key, error) {
	id, secretHex, ok := strings.Cut(strings.TrimSpace(presented), ":")
	secret, err := hex.DecodeString(secretHex)
	if !ok || err != nil || len(secret) != 32 || !IDPattern.MatchString(id) {
		return Key{}, ErrUnknownKey
	}
	a, typ, err := s.active(ctx, id)
	if err != nil {
		return Key{}, err
	}
	if !hmac.Equal(a.Secret, secret) {
		return Key{}, ErrUnknownKey
	}
	if typ != TypeConsole {
		return Key{}, ErrNotConsoleKey
	}
	k, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+keyFrom+` WHERE k.id = $1`, id))
	if err != nil {
		return Key{}, fmt.Errorf("read API key %s: %w", id, err)
	}
	return k, nil
}

// Touch records that a key was just used. It writes at most once a minute per key, so
// a busy client does not turn every request into a write.
func (s *Store) Touch(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `UPDATE relay.api_keys SET last_used_at = now()
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`, id)
	if err != nil {
		return fmt.Errorf("touch API key %s: %w", id, err)
	}
	return nil
}
