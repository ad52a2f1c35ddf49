// Package ghostadmin is a small client of a Ghost site's Admin API, for what the relay
// does to a site it connects: create, edit and delete the site's webhooks with the site's
// custom-integration Admin API key. It speaks as Ghost's own client
// (@tryghost/admin-api) does: a short HS256 JWT per request, kid = key id, signed with
// the hex-decoded secret, audience /admin/.
package ghostadmin

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// acceptVersion is the Admin API version the relay asks for (Ghost 6).
const acceptVersion = "v6.0"

var keyPattern = regexp.MustCompile(`^([0-9a-f]{24}):([0-9a-f]{64})$`)

// ParseKey splits an Admin API key "id:secret" (24 hex : 64 hex) into its id and the
// HMAC key of its tokens.
func ParseKey(key string) (id string, secret []byte, err error) {
	m := keyPattern.FindStringSubmatch(strings.TrimSpace(key))
	if m == nil {
		return "", nil, errors.New("an Admin API key is id:secret, 24 hex and 64 hex characters (Ghost Admin → Settings → Integrations → your custom integration)")
	}
	secret, _ = hex.DecodeString(m[2])
	return m[1], secret, nil
}

// Token returns an Admin API token for key id and secret, made exactly as
// @tryghost/admin-api makes one: header {"alg":"HS256","typ":"JWT","kid":id}, claims
// {"iat","exp":iat+300,"aud":"/admin/"}.
func Token(id string, secret []byte, now time.Time) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","kid":"` + id + `"}`))
	iat := now.Unix()
	claims := enc.EncodeToString([]byte(`{"iat":` + strconv.FormatInt(iat, 10) + `,"exp":` + strconv.FormatInt(iat+300, 10) + `,"aud":"/admin/"}`))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(header + "." + claims))
	return header + "." + claims + "." + enc.EncodeToString(mac.Sum(nil))
}

// Webhook is a Ghost webhook as the Admin API takes and returns it.
type Webhook struct {
	ID        string  `json:"id,omitempty"`
	Event     string  `json:"event"`
	TargetURL string  `json:"target_url"`
	Name      *string `json:"name,omitempty"`
	Secret    *string `json:"secret,omitempty"`
}

// Errors a caller tells apart with errors.Is / errors.As.
var (
	// ErrUnreachable: no HTTP answer from the site (refused, DNS, timeout, TLS).
	ErrUnreachable = errors.New("Ghost is unreachable")
	// ErrKeyRefused: the site answered 401 or 403 to the key.
	ErrKeyRefused = errors.New("Ghost refused the Admin API key")
	// ErrNotFound: the webhook does not exist on the site (404).
	ErrNotFound = errors.New("no such webhook on the Ghost site")
)

// APIError is any other error answer of the site, with Ghost's own words.
type APIError struct {
	Status  int
	Type    string
	Message string
	Context string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("Ghost answered %d", e.Status)
	if e.Type != "" {
		s += " " + e.Type
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Context != "" {
		s += " (" + e.Context + ")"
	}
	return s
}

// Client talks to one site with one key.
type Client struct {
	api    *url.URL // .../ghost/api/admin/
	keyID  string
	secret []byte
	http   *http.Client
	now    func() time.Time
}

// New returns a client of the site at siteURL (its public URL, as in Ghost's `url`
// setting) using key. httpClient nil uses a client with a 15 s timeout. Redirects are not
// followed: a POST redirected to a GET would be lost, so the caller is told where the
// site really is.
func New(siteURL, key string, httpClient *http.Client) (*Client, error) {
	id, secret, err := ParseKey(key)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(strings.TrimSpace(siteURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("site URL %q is not an absolute http(s) URL", siteURL)
	}
	u.RawQuery, u.Fragment = "", ""
	u.Path = strings.TrimSuffix(u.Path, "/") + "/ghost/api/admin/"
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 15 * time.Second}
	}
	c := *httpClient
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{api: u, keyID: id, secret: secret, http: &c, now: time.Now}, nil
}

// KeyID is the id of the client's key.
func (c *Client) KeyID() string { return c.keyID }

// SiteInfo is what a site says about itself (GET /ghost/api/admin/site/, no key needed).
type SiteInfo struct {
	Title   string `json:"title"`
	URL     string `json:"url"`
	Version string `json:"version"`
}

// Site reads the site's public description: a cheap way to tell "not reachable" and
// "not a Ghost site" apart from a refused key before changing anything.
func (c *Client) Site(ctx context.Context) (SiteInfo, error) {
	raw, err := c.do(ctx, http.MethodGet, "site/", nil)
	if err != nil {
		return SiteInfo{}, err
	}
	var out struct {
		Site *SiteInfo `json:"site"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Site == nil {
		return SiteInfo{}, fmt.Errorf("%s does not answer as a Ghost site: %.120q", c.api.Redacted(), raw)
	}
	return *out.Site, nil
}

// Config is the part of the site's configuration (GET /ghost/api/admin/config/) the relay
// reads: whether Ghost will send webhooks to a private address.
type Config struct {
	Environment             string
	AllowWebhookInternalIPs bool
}

// Config reads the site's public configuration with the key.
func (c *Client) Config(ctx context.Context) (Config, error) {
	raw, err := c.do(ctx, http.MethodGet, "config/", nil)
	if err != nil {
		return Config{}, err
	}
	var out struct {
		Config struct {
			Environment string `json:"environment"`
			Security    struct {
				// nconf may hand the environment variable over as a string.
				AllowWebhookInternalIPs any `json:"allowWebhookInternalIPs"`
			} `json:"security"`
		} `json:"config"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return Config{}, fmt.Errorf("Ghost's config answer: %w", err)
	}
	allow := false
	switch v := out.Config.Security.AllowWebhookInternalIPs.(type) {
	case bool:
		allow = v
	case string:
		allow = v == "true"
	}
	return Config{Environment: out.Config.Environment, AllowWebhookInternalIPs: allow}, nil
}

// CreateWebhook adds w to the site and returns it as Ghost stored it.
func (c *Client) CreateWebhook(ctx context.Context, w Webhook) (Webhook, error) {
	w.ID = ""
	return c.webhook(ctx, http.MethodPost, "webhooks/", w)
}

// EditWebhook sets every field of w on the site's webhook id; ErrNotFound when the site
// has no such webhook (deleted in Ghost Admin, say).
func (c *Client) EditWebhook(ctx context.Context, id string, w Webhook) (Webhook, error) {
	w.ID = ""
	return c.webhook(ctx, http.MethodPut, "webhooks/"+url.PathEscape(id)+"/", w)
}

// DeleteWebhook removes the site's webhook id; ErrNotFound when it is already gone.
func (c *Client) DeleteWebhook(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "webhooks/"+url.PathEscape(id)+"/", nil)
	return err
}

func (c *Client) webhook(ctx context.Context, method, path string, w Webhook) (Webhook, error) {
	body, err := json.Marshal(map[string][]Webhook{"webhooks": {w}})
	if err != nil {
		return Webhook{}, err
	}
	raw, err := c.do(ctx, method, path, body)
	if err != nil {
		return Webhook{}, err
	}
	var out struct {
		Webhooks []Webhook `json:"webhooks"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Webhooks) != 1 {
		return Webhook{}, fmt.Errorf("%s %s: Ghost's answer is not a webhook: %.200q", method, path, raw)
	}
	return out.Webhooks[0], nil
}

// maxAnswer bounds what is read of an answer; a webhook is a few hundred bytes.
const maxAnswer = 1 << 20

func (c *Client) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	u := c.api.JoinPath(path)
	if strings.HasSuffix(path, "/") && !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Ghost "+Token(c.keyID, c.secret, c.now()))
	req.Header.Set("Accept-Version", acceptVersion)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.api.Host, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%w at %s: reading the answer: %v", ErrUnreachable, c.api.Host, err)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return raw, nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, fmt.Errorf("Ghost redirected %s to %s: give the site's URL as Ghost's own `url` setting has it", c.api.Host, resp.Header.Get("Location"))
	}
	apiErr := &APIError{Status: resp.StatusCode}
	var e struct {
		Errors []struct {
			Type    string  `json:"type"`
			Message string  `json:"message"`
			Context *string `json:"context"`
		} `json:"errors"`
	}
	if json.Unmarshal(raw, &e) == nil && len(e.Errors) > 0 {
		apiErr.Type, apiErr.Message = e.Errors[0].Type, e.Errors[0].Message
		if e.Errors[0].Context != nil {
			apiErr.Context = *e.Errors[0].Context
		}
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("%w (%d %s): use the Admin API key of a custom integration (Ghost Admin → Settings → Integrations)", ErrKeyRefused, resp.StatusCode, strings.TrimSpace(apiErr.Message))
	case http.StatusNotFound:
		if apiErr.Type == "" {
			return nil, fmt.Errorf("no Ghost Admin API at %s (404): check the site URL", c.api.Redacted())
		}
		return nil, fmt.Errorf("%w: %w", ErrNotFound, apiErr)
	}
	return nil, apiErr
}
