package ghost

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// adminErrorsJSON holds Ghost's answers to failing Admin API requests, captured from
// this Ghost and kept true by TestAdminErrorFixtures (RELAY_GHOST_UPDATE_FIXTURES=1
// rewrites the answers from the real Ghost).
//
//go:embed testdata/admin_errors.json
var adminErrorsJSON []byte

// AdminFixtures is testdata/admin_errors.json: what Ghost answers to webhook requests it
// refuses and to tokens it refuses or accepts, for a Ghost-compatible API to match.
type AdminFixtures struct {
	About string      `json:"about"`
	Setup string      `json:"setup"`
	Cases []AdminCase `json:"cases"`
}

// AdminCase is one request and Ghost's answer. Path and Body may hold the placeholders
// {target}, {own_id} and {other_id} (see AdminFixtures.Setup and Expand).
type AdminCase struct {
	Name   string          `json:"name"`
	Method string          `json:"method"`
	Path   string          `json:"path"` // relative to /ghost/api/admin
	Auth   string          `json:"auth"` // "key" or a token variant: see CaseAuthorization
	Body   *string         `json:"body,omitempty"`
	Note   string          `json:"note,omitempty"`
	Status int             `json:"status"`
	Answer json.RawMessage `json:"answer,omitempty"` // the body, error ids replaced by "<uuid>"; absent when empty
}

// LoadAdminFixtures parses the embedded fixture file.
func LoadAdminFixtures() (AdminFixtures, error) {
	var f AdminFixtures
	if err := json.Unmarshal(adminErrorsJSON, &f); err != nil {
		return f, fmt.Errorf("ghost: parse testdata/admin_errors.json: %w", err)
	}
	return f, nil
}

// Expand fills the placeholders of s.
func Expand(s, target, ownID, otherID string) string {
	return strings.NewReplacer("{target}", target, "{own_id}", ownID, "{other_id}", otherID).Replace(s)
}

var errorIDPattern = regexp.MustCompile(`"id":"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"`)

// NormalizeAnswer replaces the random UUID Ghost gives each error with "<uuid>", so that
// two answers compare byte for byte.
func NormalizeAnswer(body []byte) []byte {
	return errorIDPattern.ReplaceAll(body, []byte(`"id":"<uuid>"`))
}

// CaseAuthorization is the Authorization header value for a case's auth kind, made with
// key (the integration's "id:secret") at now; contentKeyID is the id of the same
// integration's Content API key (for "content_key"). The kinds:
//
//	key               a valid token: HS256, kid, aud /admin/, iat now, exp iat+5m
//	none              no header ("")
//	malformed         "Ghost abc"
//	scheme_only       "Ghost"
//	bearer            "Bearer <valid token>"
//	double_space      "Ghost  <valid token>"
//	lowercase_scheme  "ghost <valid token>"
//	trailing_junk     "Ghost <valid token> extra"
//	no_kid, unknown_kid, wrong_signature, content_key (kid of a Content API key)
//	iat_6m_ago        iat now-6m, exp now+4m
//	expired           iat now-10m, exp now-5m
//	no_iat, iat_string, no_exp, no_aud
//	exp_1h            exp iat+1h
//	iat_10m_future    iat now+10m, exp now+15m
//	millisecond_times iat and exp in milliseconds
//	aud_wrong ("wrong"), aud_content ("/content/"), aud_v2 ("/v2/admin/"),
//	aud_canary ("/canary/admin/"), aud_full_url ("https://example.com/ghost/api/admin/"),
//	aud_xadmin ("xadmin/"), aud_array (["/admin/"])
//	hs512             alg HS512, signed with HMAC-SHA512
//	alg_none          alg none, no signature
//	nbf_future        nbf now+2m
func CaseAuthorization(kind, key, contentKeyID string, now time.Time) (string, error) {
	id, secret := splitKey(key)
	h := map[string]any{"alg": "HS256", "typ": "JWT", "kid": id}
	c := map[string]any{"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "aud": "/admin/"}
	valid := SignJWT(h, c, secret)
	signed := func() string { return "Ghost " + SignJWT(h, c, secret) }
	switch kind {
	case "key":
		return "Ghost " + valid, nil
	case "none":
		return "", nil
	case "malformed":
		return "Ghost abc", nil
	case "scheme_only":
		return "Ghost", nil
	case "bearer":
		return "Bearer " + valid, nil
	case "double_space":
		return "Ghost  " + valid, nil
	case "lowercase_scheme":
		return "ghost " + valid, nil
	case "trailing_junk":
		return "Ghost " + valid + " extra", nil
	case "no_kid":
		delete(h, "kid")
	case "unknown_kid":
		h["kid"] = "aaaaaaaaaaaaaaaaaaaaaaaa"
	case "content_key":
		h["kid"] = contentKeyID
	case "wrong_signature":
		return "Ghost " + SignJWT(h, c, []byte("not the secret")), nil
	case "iat_6m_ago":
		c["iat"], c["exp"] = now.Add(-6*time.Minute).Unix(), now.Add(4*time.Minute).Unix()
	case "expired":
		c["iat"], c["exp"] = now.Add(-10*time.Minute).Unix(), now.Add(-5*time.Minute).Unix()
	case "no_iat":
		delete(c, "iat")
	case "iat_string":
		c["iat"] = fmt.Sprint(now.Unix())
	case "no_exp":
		delete(c, "exp")
	case "no_aud":
		delete(c, "aud")
	case "exp_1h":
		c["exp"] = now.Add(time.Hour).Unix()
	case "iat_10m_future":
		c["iat"], c["exp"] = now.Add(10*time.Minute).Unix(), now.Add(15*time.Minute).Unix()
	case "millisecond_times":
		c["iat"], c["exp"] = now.UnixMilli(), now.Add(5*time.Minute).UnixMilli()
	case "aud_wrong":
		c["aud"] = "wrong"
	case "aud_content":
		c["aud"] = "/content/"
	case "aud_v2":
		c["aud"] = "/v2/admin/"
	case "aud_canary":
		c["aud"] = "/canary/admin/"
	case "aud_full_url":
		c["aud"] = "https://example.com/ghost/api/admin/"
	case "aud_xadmin":
		c["aud"] = "xadmin/"
	case "aud_array":
		c["aud"] = []string{"/admin/"}
	case "hs512":
		h["alg"] = "HS512"
	case "alg_none":
		h["alg"] = "none"
		enc := func(v any) string { b, _ := json.Marshal(v); return b64(b) }
		return "Ghost " + enc(h) + "." + enc(c) + ".", nil
	case "nbf_future":
		c["nbf"] = now.Add(2 * time.Minute).Unix()
	default:
		return "", fmt.Errorf("ghost: unknown auth kind %q", kind)
	}
	return signed(), nil
}

// CompactAnswer is the fixture form of an answer: normalized, and compact JSON when it
// is JSON (the fixture file is indented), else the bytes as they are.
func CompactAnswer(body []byte) json.RawMessage {
	n := NormalizeAnswer(body)
	if len(n) == 0 {
		return nil
	}
	var buf bytes.Buffer
	if json.Compact(&buf, n) == nil {
		return buf.Bytes()
	}
	s, _ := json.Marshal(string(n))
	return s
}
