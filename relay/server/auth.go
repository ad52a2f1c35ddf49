package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/relayhq/relay/relay/apikey"
)

// Ghost's Admin API key auth, verified as Ghost verifies it
// (ghost/core/core/server/services/auth/api-key/admin.js with jsonwebtoken):
//
//	Authorization: Ghost <JWT>
//	header  {"alg":"HS256","typ":"JWT","kid":"<24-hex key id>"}
//	claims  {"iat":<s>,"exp":<iat+300>,"aud":"/admin/"}
//	signed  HMAC-SHA256 with hex-decode(<64-hex secret>)
//
// Written by hand (it is short) rather than with a JWT library: only HS256 exists
// here, so there is no algorithm negotiation to get wrong.
const (
	// tokenMaxAge is Ghost's maxAge: a token is good for 5 minutes after its iat.
	// Tokens that claim a longer life (exp - iat) are refused outright.
	tokenMaxAge = 5 * time.Minute
	// clockSkew forgives a client clock that is slightly off. Ghost allows none;
	// a little avoids spurious 401s without extending a token's life meaningfully.
	clockSkew = 30 * time.Second
	// maxTokenBytes bounds the work done on a header before any key is looked up.
	maxTokenBytes = 4096
)

// adminAudience matches the aud values Ghost accepts for the Admin API: "/admin/"
// from current clients, "/v2/admin/" ... from clients pinned to older versions.
var adminAudience = regexp.MustCompile(`^/?(v[0-9]+/)?admin/?$`)

// authError is a refused token; its message is safe to show the caller.
type authError struct{ msg string }

func (e *authError) Error() string { return e.msg }

func invalidToken(format string, args ...any) error {
	return &authError{"Invalid token: " + fmt.Sprintf(format, args...)}
}

// secretLookup returns the HMAC key of an active key id, apikey.ErrUnknownKey if
// there is none.
type secretLookup func(ctx context.Context, kid string) ([]byte, error)

type jwtHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
}

type jwtClaims struct {
	Iat *float64        `json:"iat"`
	Exp *float64        `json:"exp"`
	Nbf *float64        `json:"nbf"`
	Aud json.RawMessage `json:"aud"`
}

// verifyToken checks a Ghost Admin API JWT and returns its key id. An *authError is
// the caller's fault; any other error is ours (the database, a key-encryption key).
func verifyToken(ctx context.Context, token string, now time.Time, lookup secretLookup) (string, error) {
	if len(token) > maxTokenBytes {
		return "", invalidToken("token is too long")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", invalidToken("jwt malformed")
	}
	var h jwtHeader
	if err := decodeSegment(parts[0], &h); err != nil {
		return "", invalidToken("jwt header: %v", err)
	}
	// Only HS256: "none", RS256 (public key used as HMAC secret) and friends are the
	// classic ways to forge a token past a verifier that trusts the header.
	if h.Alg != "HS256" {
		return "", invalidToken("invalid algorithm %q (only HS256)", clip(h.Alg, 20))
	}
	if len(h.Crit) > 0 {
		return "", invalidToken("unsupported crit header")
	}
	if h.Kid == "" {
		return "", &authError{"Admin API kid missing."}
	}
	if !apikey.IDPattern.MatchString(h.Kid) {
		return "", &authError{"Unknown Admin API Key"}
	}
	secret, err := lookup(ctx, h.Kid)
	if errors.Is(err, apikey.ErrUnknownKey) {
		return "", &authError{"Unknown Admin API Key"}
	}
	if err != nil {
		return "", err
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", invalidToken("invalid signature")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return "", invalidToken("invalid signature")
	}
	// Claims are read only once the signature holds: nothing unauthenticated is parsed
	// further than it must be.
	var c jwtClaims
	if err := decodeSegment(parts[1], &c); err != nil {
		return "", invalidToken("jwt payload: %v", err)
	}
	if err := checkTimes(c, now); err != nil {
		return "", err
	}
	if !audienceOK(c.Aud) {
		return "", invalidToken("jwt audience invalid. expected: /admin/")
	}
	return h.Kid, nil
}

func checkTimes(c jwtClaims, now time.Time) error {
	if c.Iat == nil {
		return invalidToken("iat required")
	}
	if c.Exp == nil {
		return invalidToken("exp required")
	}
	iat, ok1 := unixTime(*c.Iat)
	exp, ok2 := unixTime(*c.Exp)
	if !ok1 || !ok2 {
		return invalidToken("iat and exp must be Unix times in seconds")
	}
	var nbf time.Time
	if c.Nbf != nil {
		var ok bool
		if nbf, ok = unixTime(*c.Nbf); !ok {
			return invalidToken("nbf must be a Unix time in seconds")
		}
	}
	switch {
	case exp.Sub(iat) > tokenMaxAge:
		return invalidToken("exp must be at most 5 minutes after iat")
	case !now.Before(exp.Add(clockSkew)):
		return invalidToken("jwt expired")
	case !now.Before(iat.Add(tokenMaxAge + clockSkew)):
		return invalidToken("maxAge exceeded")
	case iat.After(now.Add(clockSkew)):
		return invalidToken("iat is in the future")
	case c.Nbf != nil && nbf.After(now.Add(clockSkew)):
		return invalidToken("jwt not active")
	}
	return nil
}

// unixTime converts a NumericDate; values outside [1970, 2999] (or NaN) are refused so
// that the conversion cannot overflow.
func unixTime(f float64) (time.Time, bool) {
	if !(f >= 0 && f < 32503680000) {
		return time.Time{}, false
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9)), true
}

// audienceOK accepts aud as a string or, as jsonwebtoken does, a list of which one
// must match.
func audienceOK(raw json.RawMessage) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return adminAudience.MatchString(one)
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, a := range many {
			if adminAudience.MatchString(a) {
				return true
			}
		}
	}
	return false
}

func decodeSegment(seg string, v any) error {
	// jsonwebtoken writes unpadded base64url; tolerate padding from other clients.
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return errors.New("not base64url")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errors.New("not a JSON object")
	}
	return nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

type keyIDKey struct{}

// keyID is the id of the key that authenticated the request, for logging who did what.
func keyID(ctx context.Context) string {
	id, _ := ctx.Value(keyIDKey{}).(string)
	return id
}

// requireKey wraps a handler of the Admin or audit API: it answers 401 in Ghost's error
// shape unless the request carries a valid token of an active key.
func (d Deps) requireKey(next http.HandlerFunc) http.HandlerFunc {
	keys := d.keys()
	return func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Get("Authorization")
		scheme, token, _ := strings.Cut(header, " ")
		if header == "" || !strings.EqualFold(scheme, "Ghost") || token == "" {
			writeGhostError(w, http.StatusUnauthorized, ghostError{
				Type:    "UnauthorizedError",
				Message: `Authorization header format is "Authorization: Ghost [token]"`,
			})
			return
		}
		kid, err := verifyToken(r.Context(), strings.TrimSpace(token), time.Now(), keys.Secret)
		if err != nil {
			var ae *authError
			if !errors.As(err, &ae) {
				// Ours, not the caller's: a key sealed under another KEK, or the database.
				d.Log.Error().Err(err).Str("path", r.URL.Path).Msg("cannot verify Admin API token")
				if errors.Is(err, apikey.ErrNoKEK) || errors.Is(err, apikey.ErrWrongKEK) {
					writeGhostError(w, http.StatusUnauthorized, ghostError{Type: "UnauthorizedError", Message: "Unknown Admin API Key"})
					return
				}
				writeGhostError(w, http.StatusInternalServerError, ghostError{Type: "InternalServerError", Message: "An unexpected error occurred."})
				return
			}
			// The reason, never the token.
			d.Log.Info().Str("path", r.URL.Path).Str("reason", ae.msg).Msg("Admin API request refused")
			writeGhostError(w, http.StatusUnauthorized, ghostError{Type: "UnauthorizedError", Message: ae.msg})
			return
		}
		if err := keys.Touch(r.Context(), kid); err != nil {
			d.Log.Warn().Err(err).Str("key_id", kid).Msg("could not record API key use")
		}
		next(w, r.WithContext(context.WithValue(r.Context(), keyIDKey{}, kid)))
	}
}

// keys is the key store of d; without one configured, keys are read without a
// key-encryption key (plaintext keys work, sealed ones are refused and logged).
func (d Deps) keys() *apikey.Store {
	if d.Keys != nil {
		return d.Keys
	}
	s, _ := apikey.NewStore(d.Pool, nil) // cannot fail without a KEK
	return s
}
