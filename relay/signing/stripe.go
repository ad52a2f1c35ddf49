package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

const (
	// DefaultStripeTolerance is the replay window VerifyStripe uses when
	// given a non-positive tolerance; it matches Stripe's own libraries.
	DefaultStripeTolerance = 5 * time.Minute

	// MaxStripeHeaderLen caps the header VerifyStripe will parse. A real
	// header is ~150 bytes (a few hundred during secret rotation); the cap
	// bounds the work an unauthenticated caller can make us do.
	MaxStripeHeaderLen = 8 << 10

	// MaxStripeSignatures caps the number of v1 entries. Stripe sends more
	// than one only while a secret is being rolled; the cap stops a caller
	// from making us run many comparisons per request.
	MaxStripeSignatures = 8

	stripeScheme = "v1"
)

// StripeSignature returns a Stripe-Signature header value
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>".
// As in Stripe's libraries, the whole secret string (including its "whsec_"
// prefix) is the HMAC key; it is NOT base64-decoded like a Standard Webhooks
// secret.
func StripeSignature(secret string, ts time.Time, body []byte) string {
	t := strconv.FormatInt(ts.Unix(), 10)
	return "t=" + t + "," + stripeScheme + "=" + hex.EncodeToString(stripeMAC(secret, t, body))
}

func stripeMAC(secret, t string, body []byte) []byte {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(t))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return mac.Sum(nil)
}

// VerifyStripe checks a Stripe-Signature header against body and secret.
// It returns nil only if some v1 signature matches and the signed timestamp
// is within tolerance of now in either direction (a non-positive tolerance
// means DefaultStripeTolerance). Entries for other schemes (e.g. v0) are
// ignored, as Stripe's libraries do.
//
// The signature is checked before the timestamp, so ErrStaleSignature
// always means "authentic but too old or too new" (a replay or clock skew),
// never a forgery.
func VerifyStripe(header string, body []byte, secret string, tolerance time.Duration, now time.Time) error {
	if secret == "" {
		// With an empty key anyone can compute a "valid" signature.
		return fmt.Errorf("signing: verifying Stripe signature: %w", ErrEmptySecret)
	}
	if tolerance <= 0 {
		tolerance = DefaultStripeTolerance
	}
	parsed, err := parseStripeHeader(header)
	if err != nil {
		return err
	}

	// Compare against every v1 value even after a match so the time taken
	// does not depend on which one matched.
	// Like Stripe's own libraries, hash the canonical decimal form of t.
	expected := stripeMAC(secret, strconv.FormatInt(parsed.timestamp, 10), body)
	matched := false
	for _, sig := range parsed.signatures {
		if hmac.Equal(expected, sig) {
			matched = true
		}
	}
	if !matched {
		return fmt.Errorf("%w: none of %d v1 signature(s) matches the body and secret",
			ErrBadSignature, len(parsed.signatures))
	}

	signedAt := time.Unix(parsed.timestamp, 0)
	// time.Time.Sub saturates instead of overflowing, so absurd timestamps
	// land safely outside the window.
	if age := now.Sub(signedAt); age > tolerance {
		return fmt.Errorf("%w: signed at %d, %s before now (tolerance %s)",
			ErrStaleSignature, parsed.timestamp, age.Truncate(time.Second), tolerance)
	} else if -age > tolerance {
		return fmt.Errorf("%w: signed at %d, %s in the future (tolerance %s)",
			ErrStaleSignature, parsed.timestamp, (-age).Truncate(time.Second), tolerance)
	}
	return nil
}

type stripeHeader struct {
	timestamp  int64
	signatures [][]byte
}

// parseStripeHeader parses "t=123,v1=abc,v1=def,v0=ghi". It tolerates
// optional spaces and tabs around entries, keys and values (proxies and
// hand-written fixtures add them) but is otherwise strict: every entry must
// be key=value, t must appear exactly once as a decimal number, and every v1
// value must be a hex-encoded SHA-256 MAC.
func parseStripeHeader(header string) (*stripeHeader, error) {
	if strings.TrimSpace(header) == "" {
		return nil, ErrMissingSignature
	}
	if len(header) > MaxStripeHeaderLen {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d byte limit",
			ErrMalformedSignature, len(header), MaxStripeHeaderLen)
	}

	h := &stripeHeader{}
	sawTimestamp := false
	for i, entry := range strings.Split(header, ",") {
		key, value, ok := strings.Cut(entry, "=")
		key, value = trimHeaderSpace(key), trimHeaderSpace(value)
		if !ok || key == "" {
			return nil, fmt.Errorf("%w: entry %d is not key=value", ErrMalformedSignature, i+1)
		}
		switch key {
		case "t":
			if sawTimestamp {
				// Two timestamps are ambiguous; refuse rather than guess
				// which one the signature covers.
				return nil, fmt.Errorf("%w: more than one t= entry", ErrMalformedSignature)
			}
			sawTimestamp = true
			ts, err := parseUnixSeconds(value)
			if err != nil {
				return nil, fmt.Errorf("%w: t=: %w", ErrMalformedSignature, err)
			}
			h.timestamp = ts
		case stripeScheme:
			if len(h.signatures) == MaxStripeSignatures {
				return nil, fmt.Errorf("%w: more than %d v1 signatures",
					ErrMalformedSignature, MaxStripeSignatures)
			}
			if len(value) != hex.EncodedLen(sha256.Size) {
				return nil, fmt.Errorf("%w: v1 signature is %d characters, want %d hex characters",
					ErrMalformedSignature, len(value), hex.EncodedLen(sha256.Size))
			}
			sig, err := hex.DecodeString(value)
			if err != nil {
				return nil, fmt.Errorf("%w: v1 signature is not hex", ErrMalformedSignature)
			}
			h.signatures = append(h.signatures, sig)
		default:
			// Other schemes (v0 test-mode signatures, future versions) are
			// not ours to judge.
		}
	}
	if !sawTimestamp {
		return nil, fmt.Errorf("%w: no t= entry", ErrMalformedSignature)
	}
	if len(h.signatures) == 0 {
		return nil, fmt.Errorf("%w: header has no v1 signature", ErrBadSignature)
	}
	return h, nil
}

// parseUnixSeconds accepts only plain decimal digits: strconv.ParseInt would
// also take a sign, and Stripe never sends one.
func parseUnixSeconds(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty timestamp")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("timestamp is not a decimal number")
		}
	}
	ts, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("timestamp out of range: %w", err)
	}
	return ts, nil
}

func trimHeaderSpace(s string) string {
	return strings.Trim(s, " \t")
}
