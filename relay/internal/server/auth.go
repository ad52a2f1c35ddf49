package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/relayhq/relay/relay/internal/apikey"
)

// Ghost's Admin API key auth, mirrored from Ghost 6's
// ghost/core/core/server/services/auth/api-key/admin.js (with jsonwebtoken 8.5.1 and
// jws 3): the same tokens are accepted, the same are refused, in the same order and with
// the same status, message and code, except where Ghost is laxer in a way that weakens
// the token (listed in the README's Admin API section, and marked "Deliberately" below).
//
//	Authorization: Ghost <JWT>
//	header  {"alg":"HS256","typ":"JWT","kid":"<24-hex key id>"}
//	claims  {"iat":<s>,"exp":<iat+300>,"aud":"/admin/"}   (exp optional)
//	signed  HMAC-SHA256 with hex-decode(<64-hex secret>)
//
// Written by hand (it is short) rather than with a JWT library: only HS256 exists here,
// so there is no algorithm negotiation to get wrong, and Ghost's exact order of checks
// and messages is what clients see.
const (
	// tokenMaxAge is Ghost's maxAge: a token is good until 5 minutes after its iat,
	// whatever its exp says.
	tokenMaxAge = 300
	// tokenMaxAhead bounds iat in the future. Deliberately stricter than Ghost, which
	// takes any iat: a token with an iat far ahead and no exp would live until then.
	// Five minutes forgives a client clock that is well off; a token then lives at
	// most ten minutes from the moment the relay first sees it.
	tokenMaxAhead = 300
	// maxTokenBytes bounds the work done on a header before any key is looked up.
	maxTokenBytes = 4096
)

// jwsPattern is jws's test of a compact JWS: three base64url parts, the last may be empty.
var jwsPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]+\.[a-zA-Z0-9_-]+\.[a-zA-Z0-9_-]*$`)

// keyLookup returns an active key's HMAC key and integration, apikey.ErrUnknownKey if
// there is none.
type keyLookup func(ctx context.Context, kid string) (apikey.Active, error)

// verified is who a good token speaks for.
type verified struct {
	KeyID         string
	IntegrationID string
}

func invalidJWT(reason string) *apiError {
	return &apiError{Type: "UnauthorizedError", Message: "Invalid token: " + reason, Code: "INVALID_JWT"}
}

var (
	errMalformedToken = &apiError{Type: "BadRequestError", Message: "Invalid token", Code: "INVALID_JWT"}
	errKidMissing     = &apiError{Type: "BadRequestError", Message: "Admin API kid missing.", Code: "MISSING_ADMIN_API_KID"}
	errUnknownKey     = &apiError{Type: "UnauthorizedError", Message: "Unknown Admin API Key", Code: "UNKNOWN_ADMIN_API_KEY"}
)

// audienceFor is the aud Ghost demands of a token for a request path: "admin" (or
// "<version>/admin" under a legacy version prefix) at the end, with or without slashes
// around; the start is not anchored, so full URLs such as
// "https://site/ghost/api/admin/" pass too.
func audienceFor(path string) audience {
	return audiences[legacyVersion(path)]
}

type audience struct {
	re *regexp.Regexp
	// shown is how JavaScript prints the RegExp in jsonwebtoken's message.
	shown string
}

// audiences by legacy version prefix ("" for none).
var audiences = func() map[string]audience {
	m := map[string]audience{}
	for _, v := range []string{"", "v2", "v3", "v4", "canary"} {
		src := `/?admin/?$`
		if v != "" {
			src = `/?` + v + `/admin/?$`
		}
		m[v] = audience{regexp.MustCompile(src), "/" + strings.ReplaceAll(src, "/", `\/`) + "/"}
	}
	return m
}()

// verifyToken checks a Ghost Admin API JWT for a request to path at now. A refusal is
// an *apiError (the caller's fault, answered as Ghost answers it); any other error is
// ours (the database, a key-encryption key).
func verifyToken(ctx context.Context, token, path string, now time.Time, lookup keyLookup) (verified, error) {
	if len(token) > maxTokenBytes {
		// Deliberately bounded (Ghost parses any size the HTTP server lets through).
		e := *errMalformedToken
		e.Context = "The token is longer than the " + strconv.Itoa(maxTokenBytes) + " bytes the relay accepts."
		return verified{}, &e
	}
	if !jwsPattern.MatchString(token) {
		return verified{}, errMalformedToken
	}
	parts := strings.Split(token, ".")
	// jws reads the header as Latin-1 text; a header that is not JSON, or is null,
	// false, 0 or "", makes the token undecodable.
	var header any
	if err := json.Unmarshal([]byte(latin1(nodeBase64(parts[0]))), &header); err != nil || !jsTruthy(header) {
		return verified{}, errMalformedToken
	}
	h, _ := header.(map[string]any)
	kid, present := h["kid"]
	if !present || !jsTruthy(kid) {
		return verified{}, errKidMissing
	}
	kidStr, _ := kid.(string)
	if !apikey.IDPattern.MatchString(kidStr) {
		return verified{}, errUnknownKey
	}
	key, err := lookup(ctx, kidStr)
	if errors.Is(err, apikey.ErrUnknownKey) {
		return verified{}, errUnknownKey
	}
	if err != nil {
		return verified{}, err
	}
	// jsonwebtoken's verify, in its order.
	if parts[2] == "" {
		return verified{}, invalidJWT("jwt signature is required")
	}
	// Only HS256: "none", RS256 (a public key used as HMAC secret) and friends are the
	// classic ways to forge a token past a verifier that trusts the header.
	if alg, _ := h["alg"].(string); alg != "HS256" {
		return verified{}, invalidJWT("invalid algorithm")
	}
	mac := hmac.New(sha256.New, key.Secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	// jwa compares the signature as text with the canonical encoding, in constant time.
	if !hmac.Equal([]byte(parts[2]), []byte(base64.RawURLEncoding.EncodeToString(mac.Sum(nil)))) {
		return verified{}, invalidJWT("invalid signature")
	}
	// Claims are read only once the signature holds: nothing unauthenticated is parsed
	// further than the header. A payload that is not a JSON object has no claims.
	// (Ghost parses it before the signature, and answers 500 when the header says
	// typ JWT and the payload is not JSON; the relay answers as for no claims.)
	var claims map[string]json.RawMessage
	if json.Unmarshal(nodeBase64(parts[1]), &claims) != nil {
		claims = nil
	}
	if e := checkClaims(claims, path, now); e != nil {
		return verified{}, e
	}
	return verified{KeyID: kidStr, IntegrationID: key.IntegrationID}, nil
}

// checkClaims is jsonwebtoken's claim checks with Ghost's options (maxAge 5m, the
// audience of the path, no clock tolerance), on the whole seconds it compares.
func checkClaims(claims map[string]json.RawMessage, path string, now time.Time) *apiError {
	nowSec := float64(now.Unix())
	if raw, ok := claims["nbf"]; ok {
		nbf, isNum := jsonNumber(raw)
		if !isNum {
			return invalidJWT("invalid nbf value")
		}
		if nbf > nowSec {
			// Ghost answers 500 here (NotBeforeError is not among the errors it maps);
			// the relay refuses it as the invalid token it is.
			return invalidJWT("jwt not active")
		}
	}
	if raw, ok := claims["exp"]; ok {
		exp, isNum := jsonNumber(raw)
		if !isNum {
			return invalidJWT("invalid exp value")
		}
		if nowSec >= exp {
			return invalidJWT("jwt expired")
		}
	}
	aud := audienceFor(path)
	if !audienceMatches(aud.re, claims["aud"]) {
		return invalidJWT("jwt audience invalid. expected: " + aud.shown)
	}
	iat, isNum := jsonNumber(claims["iat"])
	if !isNum {
		return invalidJWT("iat required when maxAge is specified")
	}
	// Deliberately literal: jsonwebtoken reads iat 0 as "now", so a token with iat 0
	// and no exp never ages in Ghost.
	if nowSec >= math.Floor(iat+tokenMaxAge) {
		return invalidJWT("maxAge exceeded")
	}
	if iat > nowSec+tokenMaxAhead {
		return invalidJWT("iat is in the future")
	}
	return nil
}

// jsonNumber reads a JSON number as JavaScript does (out-of-range values are infinite);
// anything else, absent included, is not a number.
func jsonNumber(raw json.RawMessage) (float64, bool) {
	s := strings.TrimSpace(string(raw))
	if s == "" || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	var ne *strconv.NumError
	if err != nil && !(errors.As(err, &ne) && ne.Err == strconv.ErrRange) {
		return 0, false
	}
	return f, true
}

// audienceMatches is jsonwebtoken's audience check: aud, or any member of it when it is
// a list, converted to text as JavaScript's RegExp.test converts it, must match.
func audienceMatches(want *regexp.Regexp, raw json.RawMessage) bool {
	var v any
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil {
		return false // undefined: "undefined" never ends in admin
	}
	targets := []any{v}
	if list, ok := v.([]any); ok {
		targets = list
	}
	for _, t := range targets {
		if want.MatchString(jsString(t)) {
			return true
		}
	}
	return false
}

// jsString is String(v) in JavaScript for a JSON value, as far as it can matter to a
// pattern ending in "admin/?": strings, and lists joined with commas.
func jsString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []any:
		s := make([]string, len(x))
		for i, e := range x {
			if e != nil {
				s[i] = jsString(e)
			}
		}
		return strings.Join(s, ",")
	case map[string]any:
		return "[object Object]"
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(x)
	default:
		return "0" // a number: no number's text ends in "admin"
	}
}

// nodeBase64 decodes as Node's Buffer.from(s, 'base64') does: base64url letters taken,
// padding optional, a dangling last character ignored.
func nodeBase64(s string) []byte {
	s = strings.TrimRight(s, "=")
	if len(s)%4 == 1 {
		s = s[:len(s)-1]
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil // cannot happen for input that matched jwsPattern
	}
	return b
}

// latin1 is Buffer#toString('binary'): one character per byte.
func latin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

type authKey struct{}

// caller is who authenticated the request, for logging and for ownership.
func caller(ctx context.Context) verified {
	v, _ := ctx.Value(authKey{}).(verified)
	return v
}

// keyID is the id of the key that authenticated the request, for logging who did what.
func keyID(ctx context.Context) string { return caller(ctx).KeyID }

// ghostScheme is Ghost's /^Ghost$/i: ASCII case only (JavaScript's /i without the u flag
// does not fold "ſ" to "s" as Unicode folding does).
func ghostScheme(s string) bool {
	return len(s) == 5 && strings.ToLower(s) == "ghost" && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r >= 0x80 })
}

// errNoAuth is Ghost's answer to an Admin API request with no credentials at all: the
// session check finds no user, and authorisation fails.
var errNoAuth = &apiError{Type: "NoPermissionError", Message: "Authorization failed",
	Context: "Unable to determine the authenticated user or integration. Check that cookies are being passed through if using session authentication."}

// requireKey wraps a handler of the Admin or audit API: it answers as Ghost answers
// unless the request carries a valid token of an active key.
func (d Deps) requireKey(next http.HandlerFunc) http.HandlerFunc {
	keys := d.keys()
	return func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Get("Authorization")
		if header == "" {
			writeAPIError(w, actionNone, errNoAuth)
			return
		}
		// Ghost: header.split(' '), then the second piece if the first is the scheme.
		pieces := strings.Split(header, " ")
		token := ""
		if len(pieces) > 1 && ghostScheme(pieces[0]) {
			token = pieces[1]
		}
		if token == "" {
			writeAPIError(w, actionNone, &apiError{Type: "UnauthorizedError",
				Message: `Authorization header format is "Authorization: Ghost [token]"`, Code: "INVALID_AUTH_HEADER"})
			return
		}
		who, err := verifyToken(r.Context(), token, r.URL.Path, time.Now(), keys.Lookup)
		if err != nil {
			var refused *apiError
			if !errors.As(err, &refused) {
				// Ours, not the caller's: a key sealed under another KEK, or the database.
				d.Log.Error().Err(err).Str("path", r.URL.Path).Msg("cannot verify Admin API token")
				if errors.Is(err, apikey.ErrNoKEK) || errors.Is(err, apikey.ErrWrongKEK) {
					writeAPIError(w, actionNone, errUnknownKey)
					return
				}
				writeAPIError(w, actionNone, &apiError{Type: "InternalServerError", Message: msgUnexpected, Code: "UNEXPECTED_ERROR"})
				return
			}
			// The reason, never the token.
			d.Log.Info().Str("path", r.URL.Path).Str("reason", refused.Message).Msg("Admin API request refused")
			writeAPIError(w, actionNone, refused)
			return
		}
		if err := keys.Touch(r.Context(), who.KeyID); err != nil {
			d.Log.Warn().Err(err).Str("key_id", who.KeyID).Msg("could not record API key use")
		}
		next(w, r.WithContext(context.WithValue(r.Context(), authKey{}, who)))
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
