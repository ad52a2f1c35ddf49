// Package sealbox seals secrets the relay must be able to read back (they are signing
// keys, not passwords, so they cannot be hashed) under the operator's key-encryption key
// (RELAY_KEY_ENCRYPTION_KEY): AES-256-GCM, with the row's identity as additional data so
// that a sealed value copied onto another row does not open. A reader of the database
// alone then learns nothing it could sign with.
package sealbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNoKEK means a value was sealed but this relay has no key-encryption key.
	ErrNoKEK = errors.New("secret is encrypted but RELAY_KEY_ENCRYPTION_KEY is not set")
	// ErrWrongKEK means a value was sealed under another key-encryption key.
	ErrWrongKEK = errors.New("secret was encrypted with a different RELAY_KEY_ENCRYPTION_KEY")
)

// ParseKEK reads a key-encryption key: 32 bytes, written as 64 hex characters or as
// standard base64. Empty means none (nil). Anything else is refused rather than
// stretched, so that a short passphrase is never mistaken for a strong key.
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

// Box seals and opens values. A nil *Box has no key: Seals reports false and Open of a
// sealed value fails with ErrNoKEK, so callers store plaintext, as Ghost does.
type Box struct {
	aead        cipher.AEAD
	fingerprint string
}

// New returns a Box for kek (from ParseKEK); nil kek gives a nil Box.
func New(kek []byte) (*Box, error) {
	if kek == nil {
		return nil, nil
	}
	if len(kek) != 32 {
		return nil, fmt.Errorf("key-encryption key must be 32 bytes, got %d", len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	// A fingerprint, not the key: it only tells two keys apart, so that a relay started
	// with another key says so instead of treating every secret as forged.
	sum := sha256.Sum256(append([]byte("relay api key KEK fingerprint\x00"), kek...))
	return &Box{aead: aead, fingerprint: hex.EncodeToString(sum[:8])}, nil
}

// Seals reports whether new values are sealed.
func (b *Box) Seals() bool { return b != nil }

// Fingerprint names the key-encryption key; empty for a nil Box.
func (b *Box) Fingerprint() string {
	if b == nil {
		return ""
	}
	return b.fingerprint
}

// Seal returns nonce || AES-256-GCM(plain), bound to ad.
func (b *Box) Seal(plain []byte, ad string) ([]byte, error) {
	if b == nil {
		return nil, ErrNoKEK
	}
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("generate nonce: %w", err)
	}
	return b.aead.Seal(nonce, nonce, plain, []byte(ad)), nil
}

// Open opens a value sealed under the key with fingerprint fp and bound to ad.
func (b *Box) Open(sealed []byte, fp, ad string) ([]byte, error) {
	if b == nil {
		return nil, ErrNoKEK
	}
	if fp != b.fingerprint {
		return nil, ErrWrongKEK
	}
	ns := b.aead.NonceSize()
	if len(sealed) < ns {
		return nil, errors.New("sealed secret is truncated")
	}
	plain, err := b.aead.Open(nil, sealed[:ns], sealed[ns:], []byte(ad))
	if err != nil {
		return nil, fmt.Errorf("cannot open sealed secret: %w", err)
	}
	return plain, nil
}
