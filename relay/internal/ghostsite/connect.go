package ghostsite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/ghostadmin"
	"github.com/relayhq/relay/relay/internal/netguard"
)

// ConnectInput is what `relay ghost connect` is given.
type ConnectInput struct {
	SiteURL  string
	AdminKey string // the site's custom-integration Admin API key, id:secret
	RelayURL string // the relay's base URL as Ghost reaches it
	// Events to forward; empty means all of Ghost's events.
	Events []string
}

// ConnectResult says what Connect did on the site, event by event.
type ConnectResult struct {
	Site Site `json:"site"`
	// Created are new webhooks; Recreated replace ones deleted on the Ghost side;
	// Updated already existed and were set again (fixing anything that differed);
	// Removed were for events no longer asked for.
	Created   []string `json:"created"`
	Recreated []string `json:"recreated"`
	Updated   []string `json:"updated"`
	Removed   []string `json:"removed"`
}

// NewClient opens a Ghost Admin API client; tests and the CLI pass ghostadmin.New with
// their HTTP client.
type NewClient func(siteURL, key string) (*ghostadmin.Client, error)

// Connect wires the site to the relay; see the package comment. It is idempotent: a
// second run with the same input creates nothing, re-creates what was deleted on the
// Ghost side and sets again what differs. No database transaction is open while it
// talks to Ghost; each webhook's id is stored as soon as Ghost created it.
func (s Store) Connect(ctx context.Context, in ConnectInput, newClient NewClient) (ConnectResult, error) {
	var res ConnectResult
	siteURL, err := NormalizeURL("--site-url", in.SiteURL)
	if err != nil {
		return res, err
	}
	relayURL, err := NormalizeURL("--relay-url", in.RelayURL)
	if err != nil {
		return res, err
	}
	keyID, adminSecret, err := ghostadmin.ParseKey(in.AdminKey)
	if err != nil {
		return res, fmt.Errorf("--admin-key: %w", err)
	}
	all, err := s.GhostEvents(ctx)
	if err != nil {
		return res, err
	}
	events := slices.Clone(in.Events)
	if len(events) == 0 {
		events = all
	}
	slices.Sort(events)
	events = slices.Compact(events)
	if err := validEvents(all, events); err != nil {
		return res, fmt.Errorf("--events: %w", err)
	}

	client, err := newClient(siteURL, in.AdminKey)
	if err != nil {
		return res, err
	}
	if _, err := client.Site(ctx); err != nil {
		return res, describe(siteURL, err)
	}
	if err := checkReachable(ctx, client, relayURL); err != nil {
		return res, err
	}

	site, inbound, err := s.upsert(ctx, siteURL, relayURL, keyID, adminSecret, events)
	if err != nil {
		return res, err
	}
	for _, event := range events {
		outcome, err := s.syncWebhook(ctx, client, site, relayURL, inbound, event)
		if err != nil {
			return res, err
		}
		switch outcome {
		case created:
			res.Created = append(res.Created, event)
		case recreated:
			res.Recreated = append(res.Recreated, event)
		default:
			res.Updated = append(res.Updated, event)
		}
	}
	for event, id := range site.Webhooks {
		if slices.Contains(events, event) {
			continue
		}
		if err := client.DeleteWebhook(ctx, id); err != nil && !errors.Is(err, ghostadmin.ErrNotFound) {
			return res, describe(siteURL, err)
		}
		if _, err := s.Pool.Exec(ctx, `DELETE FROM relay.ghost_site_webhooks WHERE site_id = $1 AND event = $2`, site.ID, event); err != nil {
			return res, fmt.Errorf("forget webhook %s of Ghost site %s: %w", id, site.ID, err)
		}
		res.Removed = append(res.Removed, event)
	}
	slices.Sort(res.Removed)
	res.Site, err = s.Get(ctx, site.ID)
	return res, err
}

type syncOutcome int

const (
	updated syncOutcome = iota
	created
	recreated
)

// syncWebhook makes the site's webhook for event what the relay wants: it edits the one
// connect created before, or creates it (again, if it was deleted on the Ghost side),
// and records its id as soon as Ghost answered.
func (s Store) syncWebhook(ctx context.Context, client *ghostadmin.Client, site Site, relayURL, inbound, event string) (syncOutcome, error) {
	hook := ghostadmin.Webhook{
		Event:     event,
		TargetURL: relayURL + InboundPath(site.ID, event),
		Name:      ptr("relay: " + event),
		Secret:    &inbound,
	}
	id, known := site.Webhooks[event]
	if known {
		_, err := client.EditWebhook(ctx, id, hook)
		if err == nil {
			return updated, nil
		}
		if !errors.Is(err, ghostadmin.ErrNotFound) {
			return 0, describe(site.URL, err)
		}
	}
	made, err := client.CreateWebhook(ctx, hook)
	if err != nil {
		var apiErr *ghostadmin.APIError
		if errors.As(err, &apiErr) && strings.Contains(apiErr.Context, "already been used") {
			return 0, fmt.Errorf("Ghost at %s already has a webhook for %s to %s that the relay did not create or did not record: delete it in Ghost Admin (Settings → Integrations) and run connect again", site.URL, event, hook.TargetURL)
		}
		return 0, describe(site.URL, err)
	}
	if _, err := s.Pool.Exec(ctx, `INSERT INTO relay.ghost_site_webhooks (site_id, event, ghost_webhook_id) VALUES ($1, $2, $3)
		ON CONFLICT (site_id, event) DO UPDATE SET ghost_webhook_id = EXCLUDED.ghost_webhook_id`, site.ID, event, made.ID); err != nil {
		return 0, fmt.Errorf("record webhook %s of Ghost site %s (it exists on the site; run connect again): %w", made.ID, site.ID, err)
	}
	if known {
		return recreated, nil
	}
	return created, nil
}

// upsert stores the site (a new id and inbound secret the first time; the same ones on
// every later connect, so Ghost's stored webhooks stay valid) and returns it with the
// inbound secret.
func (s Store) upsert(ctx context.Context, siteURL, relayURL, keyID string, adminSecret []byte, events []string) (Site, string, error) {
	var site Site
	var inbound string
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		id, c, err := s.readSecrets(ctx, tx.QueryRow(ctx, secretSelect+` WHERE url = $1 FOR UPDATE`, siteURL))
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if err := tx.QueryRow(ctx, `SELECT relay.object_id()`).Scan(&id); err != nil {
				return err
			}
			if inbound, err = newInboundSecret(); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if _, inbound, err = s.open(id, c); err != nil {
				return err
			}
		}
		cols, err := s.seal(id, adminSecret, inbound)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO relay.ghost_sites (id, url, relay_url, events, admin_key_id,
				admin_secret_plain, admin_secret_sealed, inbound_secret_plain, inbound_secret_sealed, kek_fingerprint)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (id) DO UPDATE SET relay_url = EXCLUDED.relay_url, events = EXCLUDED.events,
				admin_key_id = EXCLUDED.admin_key_id, admin_secret_plain = EXCLUDED.admin_secret_plain,
				admin_secret_sealed = EXCLUDED.admin_secret_sealed, inbound_secret_plain = EXCLUDED.inbound_secret_plain,
				inbound_secret_sealed = EXCLUDED.inbound_secret_sealed, kek_fingerprint = EXCLUDED.kek_fingerprint,
				updated_at = now()`,
			id, siteURL, relayURL, events, keyID, cols.adminPlain, cols.adminSealed, cols.inboundPlain, cols.inboundSealed, cols.fingerprint)
		if err != nil {
			return err
		}
		site, err = scanSite(tx.QueryRow(ctx, `SELECT `+siteColumns+` FROM relay.ghost_sites s WHERE s.id = $1`, id))
		return err
	})
	if err != nil {
		return Site{}, "", fmt.Errorf("store Ghost site %s: %w", siteURL, err)
	}
	return site, inbound, nil
}

// Disconnect deletes on the site exactly the webhooks Connect created (one already
// deleted there is fine), then forgets the site. The events it sent stay in the log.
func (s Store) Disconnect(ctx context.Context, siteID string, newClient NewClient) (removed []string, err error) {
	site, err := s.Get(ctx, siteID)
	if err != nil {
		return nil, err
	}
	client, err := s.ghostClient(ctx, site, newClient)
	if err != nil {
		return nil, err
	}
	for _, event := range slices.Sorted(maps.Keys(site.Webhooks)) {
		if err := client.DeleteWebhook(ctx, site.Webhooks[event]); err != nil && !errors.Is(err, ghostadmin.ErrNotFound) {
			return removed, describe(site.URL, err)
		}
		if _, err := s.Pool.Exec(ctx, `DELETE FROM relay.ghost_site_webhooks WHERE site_id = $1 AND event = $2`, site.ID, event); err != nil {
			return removed, fmt.Errorf("forget webhook of Ghost site %s: %w", site.ID, err)
		}
		removed = append(removed, event)
	}
	if _, err := s.Pool.Exec(ctx, `DELETE FROM relay.ghost_sites WHERE id = $1`, site.ID); err != nil {
		return removed, fmt.Errorf("forget Ghost site %s: %w", site.ID, err)
	}
	return removed, nil
}

func ptr[T any](v T) *T { return &v }

// describe turns a Ghost client error into the one line a user needs.
func describe(siteURL string, err error) error {
	switch {
	case errors.Is(err, ghostadmin.ErrUnreachable):
		return fmt.Errorf("cannot reach Ghost at %s: %w", siteURL, err)
	case errors.Is(err, ghostadmin.ErrKeyRefused):
		return fmt.Errorf("Ghost at %s: %w", siteURL, err)
	}
	return fmt.Errorf("Ghost at %s: %w", siteURL, err)
}

// checkReachable refuses a relay URL that the site is configured not to call: Ghost in
// production sends webhooks only to public addresses unless
// security__allowWebhookInternalIPs is set, and says so only in its own log.
func checkReachable(ctx context.Context, client *ghostadmin.Client, relayURL string) error {
	u, err := url.Parse(relayURL)
	if err != nil {
		return err
	}
	ip, ok := privateAddress(ctx, u.Hostname())
	if !ok {
		return nil
	}
	cfg, err := client.Config(ctx)
	if err != nil {
		return nil // cannot tell; Ghost's own log will say URL_PRIVATE_INVALID if it refuses
	}
	if !strings.HasPrefix(cfg.Environment, "production") || cfg.AllowWebhookInternalIPs {
		return nil
	}
	return fmt.Errorf("Ghost runs in production and will not send webhooks to %s (%s, a private address): set security__allowWebhookInternalIPs=true in Ghost's configuration (environment variable or config.production.json) and restart Ghost, or give a --relay-url that resolves to a public address", u.Host, ip)
}

// privateAddress reports the first address of host that is loopback, private or
// otherwise not public, as Ghost's request-external refuses those.
func privateAddress(ctx context.Context, host string) (string, bool) {
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return "", false
		}
		addrs = ips
	}
	guard := &netguard.Policy{}
	for _, ip := range addrs {
		if guard.Check(host, ip) != nil {
			return ip.String(), true
		}
	}
	return "", false
}

// MarshalJSON keeps Webhooks an object even when empty.
func (st Site) MarshalJSON() ([]byte, error) {
	type plain Site
	if st.Webhooks == nil {
		st.Webhooks = map[string]string{}
	}
	return json.Marshal(plain(st))
}
