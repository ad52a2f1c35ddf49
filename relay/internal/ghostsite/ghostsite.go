// Package ghostsite connects unmodified Ghost sites to the relay. Ghost sends its own
// webhooks in-process, fire-and-forget (no retry, nothing kept, one slow receiver delays
// the next); connected to the relay, a site sends each of its events once, to the relay,
// which keeps it and fans it out to its own webhooks with retries and an audit trail.
//
// Connect creates on the site, with its custom-integration Admin API key, one Ghost
// webhook per event whose target is the relay's inbound URL (/ghost/in/{site}/{event}),
// signed with an inbound secret the relay generated. Receive is what that URL does with
// a request: verify Ghost's signature, then store the exact body and emit the event in
// one transaction.
package ghostsite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relayhq/relay/relay/internal/ghostadmin"
	"github.com/relayhq/relay/relay/internal/sealbox"
)

// Site is a connected site, without its secrets.
type Site struct {
	ID       string   `json:"id"`
	URL      string   `json:"url"`
	RelayURL string   `json:"relay_url"`
	Events   []string `json:"events"`
	// AdminKeyID is the id of the integration key the relay uses on the site.
	AdminKeyID string `json:"admin_key_id"`
	Encrypted  bool   `json:"encrypted"`
	// Webhooks maps each event to the id of the webhook Connect created for it on the site.
	Webhooks          map[string]string `json:"webhooks"`
	ContentVersion    *string           `json:"content_version"`
	LastReceivedAt    *time.Time        `json:"last_received_at"`
	LastReceivedEvent *string           `json:"last_received_event"`
	ReceivedCount     int64             `json:"received_count"`
	CreatedAt         time.Time         `json:"created_at"`
	UpdatedAt         time.Time         `json:"updated_at"`
}

// InboundPath is where a site's webhook for event posts, relative to the relay's URL.
func InboundPath(siteID, event string) string { return "/ghost/in/" + siteID + "/" + event }

// ErrNotFound is returned for an unknown site id.
var ErrNotFound = errors.New("no such Ghost site")

// Store reads and writes relay.ghost_sites. Box seals secrets (nil: plaintext).
type Store struct {
	Pool *pgxpool.Pool
	Box  *sealbox.Box
}

// GhostEvents are the event names Ghost sends, from the relay's event registry.
func (s Store) GhostEvents(ctx context.Context) ([]string, error) {
	rows, err := s.Pool.Query(ctx, `SELECT name FROM relay.event_types WHERE source = 'ghost' ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("read Ghost's event names: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read Ghost's event names: %w", err)
	}
	return names, nil
}

// NormalizeURL returns u as stored: absolute http(s), no query, fragment or trailing
// slash, lower-case scheme and host.
func NormalizeURL(what, u string) (string, error) {
	p, err := url.Parse(strings.TrimSpace(u))
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Hostname() == "" {
		return "", fmt.Errorf("%s %q is not an absolute http(s) URL", what, u)
	}
	if p.User != nil {
		return "", fmt.Errorf("%s must not carry credentials", what)
	}
	p.Scheme, p.Host = strings.ToLower(p.Scheme), strings.ToLower(p.Host)
	p.RawQuery, p.Fragment, p.RawFragment = "", "", ""
	p.Path = strings.TrimRight(p.Path, "/")
	p.RawPath = ""
	return p.String(), nil
}

const siteColumns = `s.id, s.url, s.relay_url, s.events, s.admin_key_id, s.kek_fingerprint IS NOT NULL,
	s.content_version, s.last_received_at, s.last_received_event, s.received_count, s.created_at, s.updated_at,
	coalesce((SELECT json_object_agg(w.event, w.ghost_webhook_id) FROM relay.ghost_site_webhooks w WHERE w.site_id = s.id), '{}')`

func scanSite(row pgx.Row) (Site, error) {
	var st Site
	err := row.Scan(&st.ID, &st.URL, &st.RelayURL, &st.Events, &st.AdminKeyID, &st.Encrypted,
		&st.ContentVersion, &st.LastReceivedAt, &st.LastReceivedEvent, &st.ReceivedCount, &st.CreatedAt, &st.UpdatedAt,
		&st.Webhooks)
	return st, err
}

// List returns every connected site, oldest first.
func (s Store) List(ctx context.Context) ([]Site, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+siteColumns+` FROM relay.ghost_sites s ORDER BY s.created_at, s.id`)
	if err != nil {
		return nil, fmt.Errorf("list Ghost sites: %w", err)
	}
	sites, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Site, error) { return scanSite(r) })
	if err != nil {
		return nil, fmt.Errorf("list Ghost sites: %w", err)
	}
	return sites, nil
}

// Get returns one site.
func (s Store) Get(ctx context.Context, id string) (Site, error) {
	st, err := scanSite(s.Pool.QueryRow(ctx, `SELECT `+siteColumns+` FROM relay.ghost_sites s WHERE s.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Site{}, ErrNotFound
	}
	if err != nil {
		return Site{}, fmt.Errorf("get Ghost site %s: %w", id, err)
	}
	return st, nil
}

// secretColumns are the two secrets of a site, each plaintext or sealed.
type secretColumns struct {
	adminPlain, inboundPlain   *string
	adminSealed, inboundSealed []byte
	fingerprint                *string
}

// seal prepares the site's secrets for storage; the site id is the additional data, so a
// sealed secret copied to another site does not open.
func (s Store) seal(siteID string, adminSecret []byte, inbound string) (secretColumns, error) {
	var c secretColumns
	if !s.Box.Seals() {
		a := hex.EncodeToString(adminSecret)
		c.adminPlain, c.inboundPlain = &a, &inbound
		return c, nil
	}
	var err error
	if c.adminSealed, err = s.Box.Seal(adminSecret, "ghost-site-admin:"+siteID); err != nil {
		return c, err
	}
	if c.inboundSealed, err = s.Box.Seal([]byte(inbound), "ghost-site-inbound:"+siteID); err != nil {
		return c, err
	}
	fp := s.Box.Fingerprint()
	c.fingerprint = &fp
	return c, nil
}

func (s Store) open(siteID string, c secretColumns) (adminSecret []byte, inbound string, err error) {
	if c.adminPlain != nil && c.inboundPlain != nil {
		adminSecret, err = hex.DecodeString(*c.adminPlain)
		return adminSecret, *c.inboundPlain, err
	}
	fp := ""
	if c.fingerprint != nil {
		fp = *c.fingerprint
	}
	if adminSecret, err = s.Box.Open(c.adminSealed, fp, "ghost-site-admin:"+siteID); err != nil {
		return nil, "", fmt.Errorf("Ghost site %s: %w", siteID, err)
	}
	in, err := s.Box.Open(c.inboundSealed, fp, "ghost-site-inbound:"+siteID)
	if err != nil {
		return nil, "", fmt.Errorf("Ghost site %s: %w", siteID, err)
	}
	return adminSecret, string(in), nil
}

func (s Store) readSecrets(ctx context.Context, q pgx.Row) (id string, c secretColumns, err error) {
	err = q.Scan(&id, &c.adminPlain, &c.adminSealed, &c.inboundPlain, &c.inboundSealed, &c.fingerprint)
	return id, c, err
}

const secretSelect = `SELECT id, admin_secret_plain, admin_secret_sealed, inbound_secret_plain, inbound_secret_sealed, kek_fingerprint
	FROM relay.ghost_sites`

// inboundSecret returns the secret a site signs its requests with.
func (s Store) inboundSecret(ctx context.Context, siteID string) (string, error) {
	id, c, err := s.readSecrets(ctx, s.Pool.QueryRow(ctx, secretSelect+` WHERE id = $1`, siteID))
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("read Ghost site %s: %w", siteID, err)
	}
	_, inbound, err := s.open(id, c)
	return inbound, err
}

// newInboundSecret is 32 random bytes as hex: Ghost keys its HMAC with the secret's text.
func newInboundSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate inbound secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func validEvents(all, want []string) error {
	for _, e := range want {
		if !slices.Contains(all, e) {
			return fmt.Errorf("%q is not one of Ghost's %d events (%s)", e, len(all), strings.Join(all, ", "))
		}
	}
	return nil
}

// ghostClient opens the Admin API client of a stored site.
func (s Store) ghostClient(ctx context.Context, st Site, newClient func(siteURL, key string) (*ghostadmin.Client, error)) (*ghostadmin.Client, error) {
	id, c, err := s.readSecrets(ctx, s.Pool.QueryRow(ctx, secretSelect+` WHERE id = $1`, st.ID))
	if err != nil {
		return nil, fmt.Errorf("read Ghost site %s: %w", st.ID, err)
	}
	admin, _, err := s.open(id, c)
	if err != nil {
		return nil, err
	}
	return newClient(st.URL, st.AdminKeyID+":"+hex.EncodeToString(admin))
}
