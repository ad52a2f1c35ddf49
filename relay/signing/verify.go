package signing

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The errors of every Verify function (wrapped; compare with errors.Is). An HTTP
// handler answers ErrMissingSignature with 400 (the request is not a signed webhook at
// all) and the others with 401. A signature is checked before its timestamp, so
// ErrStaleSignature always means "authentic but outside the tolerance" (a replay or
// clock skew), never a forgery.
var (
	ErrMissingSignature   = errors.New("signing: signature header missing")
	ErrMalformedSignature = errors.New("signing: signature header malformed")
	ErrBadSignature       = errors.New("signing: signature does not match")
	ErrStaleSignature     = errors.New("signing: signature timestamp outside tolerance")
)

// DefaultTolerance is the replay window of VerifyStandard and VerifyGhost when given a
// non-positive tolerance: the Standard Webhooks libraries' five minutes.
const DefaultTolerance = 5 * time.Minute

// VerifyStandard checks a Standard Webhooks request: the webhook-id, webhook-timestamp
// and webhook-signature header values and the body as received. Any one of the
// space-separated "v1,<base64>" signatures may match (senders list several while they
// rotate secrets); other versions are ignored, as the reference libraries do.
func VerifyStandard(secret, msgID, timestamp, signatures string, body []byte, tolerance time.Duration, now time.Time) error {
	if msgID == "" || timestamp == "" || signatures == "" {
		return fmt.Errorf("%w: need webhook-id, webhook-timestamp and webhook-signature", ErrMissingSignature)
	}
	secs, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: webhook-timestamp %q is not unix seconds", ErrMalformedSignature, timestamp)
	}
	signedAt := time.Unix(secs, 0)
	want, err := StandardSignature(secret, msgID, signedAt, body)
	if err != nil {
		return fmt.Errorf("signing: verify standard webhooks signature: %w", err)
	}
	// Compare with every candidate, so the time taken does not tell which one matched.
	matched := false
	for _, sig := range strings.Fields(signatures) {
		if strings.HasPrefix(sig, "v1,") && hmac.Equal([]byte(sig), []byte(want)) {
			matched = true
		}
	}
	if !matched {
		return fmt.Errorf("%w: no v1 entry of webhook-signature matches", ErrBadSignature)
	}
	return checkAge(signedAt, tolerance, now)
}

// VerifyGhost checks an X-Ghost-Signature header ("sha256=<hex>, t=<unix millis>") as
// Ghost >= 5.87.1 computes it: HMAC-SHA256 keyed with the secret's own bytes (never
// base64-decoded) over the body followed by the millisecond timestamp.
func VerifyGhost(secret, header string, body []byte, tolerance time.Duration, now time.Time) error {
	if header == "" {
		return fmt.Errorf("%w: X-Ghost-Signature", ErrMissingSignature)
	}
	if secret == "" {
		return fmt.Errorf("signing: verify Ghost signature: %w", ErrEmptySecret)
	}
	var hexSig, millis string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "sha256":
			hexSig = v
		case "t":
			millis = v
		}
	}
	ms, err := strconv.ParseInt(millis, 10, 64)
	if hexSig == "" || err != nil {
		return fmt.Errorf("%w: X-Ghost-Signature is not \"sha256=<hex>, t=<millis>\"", ErrMalformedSignature)
	}
	signedAt := time.UnixMilli(ms)
	want := GhostSignature(secret, body, signedAt)
	got := "sha256=" + strings.ToLower(hexSig) + ", t=" + strconv.FormatInt(ms, 10)
	if !hmac.Equal([]byte(got), []byte(want)) {
		return fmt.Errorf("%w: X-Ghost-Signature", ErrBadSignature)
	}
	return checkAge(signedAt, tolerance, now)
}

func checkAge(signedAt time.Time, tolerance time.Duration, now time.Time) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if age := now.Sub(signedAt); age > tolerance || -age > tolerance {
		return fmt.Errorf("%w: signed at %s, now %s (tolerance %s)", ErrStaleSignature,
			signedAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), tolerance)
	}
	return nil
}
