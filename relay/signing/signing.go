// Package signing computes and verifies the HMAC signatures relay puts on,
// or checks on, webhook HTTP requests:
//
//   - Standard Webhooks (https://www.standardwebhooks.com), used for relay's
//     outbound deliveries;
//   - Ghost's X-Ghost-Signature, so receivers written for Ghost keep working;
//   - Stripe's Stripe-Signature, both to verify Stripe's inbound webhooks and
//     to produce test fixtures.
//
// Everything here is a pure function over its arguments (the current time is
// passed in, never read), so it is deterministic and trivially testable. Only
// the standard library's crypto is used, so there is no third-party code on
// the signing path.
package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// StandardSecretPrefix marks a Standard Webhooks secret whose remainder is
// the base64-encoded key, as issued by Svix and the Standard Webhooks
// reference libraries.
const StandardSecretPrefix = "whsec_"

// ErrEmptySecret is returned when a secret (or the key it decodes to) is
// empty: an HMAC keyed with nothing authenticates nothing, so this is always
// a configuration mistake that must not be papered over.
var ErrEmptySecret = errors.New("signing: secret is empty")

// SecretKey returns the HMAC key for a Standard Webhooks secret. A secret
// starting with "whsec_" carries its key base64-encoded (standard alphabet,
// padded) after the prefix, which is how every Standard Webhooks and Svix
// library interprets it; any other secret is used as its raw UTF-8 bytes.
func SecretKey(secret string) ([]byte, error) {
	if secret == "" {
		return nil, ErrEmptySecret
	}
	rest, ok := strings.CutPrefix(secret, StandardSecretPrefix)
	if !ok {
		return []byte(secret), nil
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		// Deliberately do not echo the secret into the error: errors end up
		// in logs.
		return nil, fmt.Errorf("signing: decoding base64 key of %s secret: %w", StandardSecretPrefix, err)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("signing: %s secret has no key after the prefix: %w", StandardSecretPrefix, ErrEmptySecret)
	}
	return key, nil
}

// StandardSignature returns the value for the webhook-signature header of a
// Standard Webhooks request: "v1," followed by the base64 HMAC-SHA256 of
// msgID + "." + unix seconds + "." + body. The same msgID and ts must be sent
// in the webhook-id and webhook-timestamp headers.
func StandardSignature(secret string, msgID string, ts time.Time, body []byte) (string, error) {
	if msgID == "" {
		// Every verifier rejects a request without webhook-id, so signing one
		// would only produce undeliverable messages.
		return "", errors.New("signing: standard webhooks message id is empty")
	}
	key, err := SecretKey(secret)
	if err != nil {
		return "", fmt.Errorf("signing: standard webhooks signature: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	// hash.Hash.Write never returns an error.
	mac.Write([]byte(msgID))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, ts.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// GhostSignature returns the value of the X-Ghost-Signature header using the
// formula of Ghost >= 5.87.1:
//
//	sha256=<hex HMAC-SHA256(secret, body + tsMillis)>, t=<tsMillis>
//
// The millisecond timestamp is appended to the body with no separator; that
// is what Ghost does, and receivers written against Ghost recompute exactly
// that string. (Ghost before 5.87.1 signed the body alone, which let a
// signature be replayed forever.)
func GhostSignature(secret string, body []byte, ts time.Time) string {
	millis := strconv.AppendInt(nil, ts.UnixMilli(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	mac.Write(millis)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil)) + ", t=" + string(millis)
}
