// Package apikey keeps the Admin API keys (relay.api_keys), in Ghost's format: a key is
// "id:secret", 24 hex characters and 64 hex characters, and the hex-decoded secret is
// the HMAC-SHA256 key of the JWTs a client signs with it (see package server).
//
// Because the secret is a signing key rather than a password, the relay must be able
// to recover it, so it cannot be stored as a hash. With a key-encryption key
// (RELAY_KEY_ENCRYPTION_KEY) the secret is sealed with AES-256-GCM and a reader of the
// database alone cannot mint tokens; without one it is stored in plaintext, as Ghost
// stores its own keys.
package apikey

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Key is a stored key, without its secret.
type Key struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Encrypted  bool       `json:"encrypted"`
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

var (
	// ErrNotFound is returned for an id that names no key.
	ErrNotFound = errors.New("API key not found")
	// ErrUnknownKey is returned by Secret for a key that does not exist or is revoked;
	// the two are not told apart to a caller presenting a token.
	ErrUnknownKey = errors.New("unknown or revoked API key")
	// ErrNoKEK means the key was sealed but this relay has no key-encryption key.
	ErrNoKEK = errors.New("API key is encrypted but RELAY_KEY_ENCRYPTION_KEY is not set")
	// ErrWrongKEK means the key was sealed under another key-encryption key.
	ErrWrongKEK = errors.New("API key was encrypted with a different RELAY_KEY_ENCRYPTION_KEY")
)

// IDPattern is the shape of a key id (and of a JWT's kid): Ghost's 24-hex ObjectId.
var IDPattern = regexp.MustCompile(`^[0-9a-f]{24}$`)

// ParseKEK reads a key-encryption key: 32 bytes, written as 64 hex characters or as
// standard base64. Empty means none. Anything else is refused rather than stretched,
// so that a short passphrase is never mistaken for a strong key.
func ParseKEK(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	return nil, errors.New("must be 32 random bytes as 64 hex characters or base64 (e.g. `openssl rand -hex 32`)")
}

// Store reads and writes relay.api_keys.
type Store struct {
	pool        *pgxpool.Pool
	aead        cipher.AEAD // nil: no key-encryption key
	fingerprint string
}

// NewStore returns a Store; kek (from ParseKEK) may be nil, and then new keys are
// stored in plaintext and sealed ones cannot be used.
func NewStore(pool *pgxpool.Pool, kek []byte) (*Store, error) {
	s := &Store{pool: pool}
	if kek == nil {
		return s, nil
	}
	if len(kek) != 32 {
		return nil, fmt.Errorf("key-encryption key must be 32 bytes, got %d", len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	if s.aead, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	// A fingerprint, not the key: it only tells two keys apart.
	sum := sha256.Sum256(append([]byte("relay api key KEK fingerprint\x00"), kek...))
	s.fingerprint = hex.EncodeToString(sum[:8])
	return s, nil
}

// Encrypts reports whether new keys are sealed.
func (s *Store) Encrypts() bool { return s.aead != nil }

// newID makes a Ghost-style ObjectId: 4 bytes of seconds, then 8 random bytes.
func newID(now time.Time) (string, error) {
	b := make([]byte, 12)
	binary.BigEndian.PutUint32(b, uint32(now.Unix()))
	if _, err := rand.Read(b[4:]); err != nil {
		return "", fmt.Errorf("generate key id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Create makes a key and returns it with the full "id:secret" string, which is never
// available again: only its holder can use it from then on.
func (s *Store) Create(ctx context.Context, name string) (Key, string, error) {
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
	if s.aead != nil {
		nonce := make([]byte, s.aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return Key{}, "", fmt.Errorf("generate nonce: %w", err)
		}
		sealed = s.aead.Seal(nonce, nonce, raw, []byte(id))
		fp = &s.fingerprint
	} else {
		plain = &secret
	}
	k := Key{ID: id, Name: name, Encrypted: sealed != nil}
	err = s.pool.QueryRow(ctx, `INSERT INTO relay.api_keys (id, name, secret_plain, secret_sealed, kek_fingerprint)
		VALUES ($1, $2, $3, $4, $5) RETURNING created_at`, id, name, plain, sealed, fp).Scan(&k.CreatedAt)
	if err != nil {
		return Key{}, "", fmt.Errorf("store API key: %w", err)
	}
	return k, id + ":" + secret, nil
}

const keyColumns = `id, name, secret_sealed IS NOT NULL, created_at, revoked_at, last_used_at`

func scanKey(row pgx.Row) (Key, error) {
	var k Key
	err := row.Scan(&k.ID, &k.Name, &k.Encrypted, &k.CreatedAt, &k.RevokedAt, &k.LastUsedAt)
	return k, err
}

// List returns every key, revoked ones included, oldest first.
func (s *Store) List(ctx context.Context) ([]Key, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM relay.api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	return keys, nil
}

// Revoke ends a key at once: the next request signed with it is refused. Revoking a
// revoked key keeps its first revocation time.
func (s *Store) Revoke(ctx context.Context, id string) (Key, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, `UPDATE relay.api_keys SET revoked_at = coalesce(revoked_at, now())
		WHERE id = $1 RETURNING `+keyColumns, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, ErrNotFound
	}
	if err != nil {
		return Key{}, fmt.Errorf("revoke API key %s: %w", id, err)
	}
	return k, nil
}

// Secret returns the HMAC key (the hex-decoded secret) of an active key, for verifying
// a token that names it. It reads the database on every call, so a revocation takes
// effect on the very next request.
func (s *Store) Secret(ctx context.Context, id string) ([]byte, error) {
	if !IDPattern.MatchString(id) {
		return nil, ErrUnknownKey
	}
	var plain, fp *string
	var sealed []byte
	err := s.pool.QueryRow(ctx, `SELECT secret_plain, secret_sealed, kek_fingerprint FROM relay.api_keys
		WHERE id = $1 AND revoked_at IS NULL`, id).Scan(&plain, &sealed, &fp)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrUnknownKey
	}
	if err != nil {
		return nil, fmt.Errorf("read API key %s: %w", id, err)
	}
	if plain != nil {
		b, err := hex.DecodeString(*plain)
		if err != nil {
			return nil, fmt.Errorf("API key %s: stored secret is not hex: %w", id, err)
		}
		return b, nil
	}
	if s.aead == nil {
		return nil, ErrNoKEK
	}
	if fp == nil || *fp != s.fingerprint {
		return nil, ErrWrongKEK
	}
	ns := s.aead.NonceSize()
	if len(sealed) < ns {
		return nil, fmt.Errorf("API key %s: sealed secret is truncated", id)
	}
	raw, err := s.aead.Open(nil, sealed[:ns], sealed[ns:], []byte(id))
	if err != nil {
		return nil, fmt.Errorf("API key %s: cannot open sealed secret: %w", id, err)
	}
	return raw, nil
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
