// Package webhook manages subscriptions (relay.webhooks): Ghost's column set and the
// rules of a webhook (README: "Admin API (Ghost-compatible)"), shared by the CLI and the
// Admin API.
package webhook

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/relayhq/relay/relay/internal/invalid"
	"github.com/relayhq/relay/relay/internal/store"
)

// Webhook is one subscription, with Ghost's columns plus status and disabled_reason.
type Webhook struct {
	ID             string  `json:"id"`
	Event          string  `json:"event"`
	TargetURL      string  `json:"target_url"`
	Name           *string `json:"name"`
	Secret         *string `json:"secret"`
	APIVersion     string  `json:"api_version"`
	IntegrationID  *string `json:"integration_id"`
	Status         string  `json:"status"`
	DisabledReason *string `json:"disabled_reason"`
	// StripeSignature marks a webhook (of a stripe.* pattern) that receives Stripe's
	// signature on events the Stripe endpoint created: Ghost's Stripe endpoint.
	StripeSignature bool `json:"stripe_signature"`
	// Ordered webhooks get the deliveries of each ordering key (the post, member, …
	// an event is about) one at a time, in commit order.
	Ordered             bool       `json:"ordered"`
	LastTriggeredAt     *time.Time `json:"last_triggered_at"`
	LastTriggeredStatus *string    `json:"last_triggered_status"`
	LastTriggeredError  *string    `json:"last_triggered_error"`
	CreatedAt           time.Time  `json:"created_at"`
	UpdatedAt           time.Time  `json:"updated_at"`
}

// Masked returns a copy safe to print: the secret, if any, is replaced by a hint, and
// the target URL is masked (MaskURL).
func (w Webhook) Masked() Webhook {
	w.TargetURL = MaskURL(w.TargetURL)
	if w.Secret != nil && *w.Secret != "" {
		m := MaskSecret(*w.Secret)
		w.Secret = &m
	}
	return w
}

// MaskSecret keeps only enough of a secret to tell two apart.
func MaskSecret(s string) string {
	if strings.HasPrefix(s, "whsec_") && len(s) > 10 {
		return "whsec_****" + s[len(s)-4:]
	}
	return "****"
}

var (
	// ErrNotFound is returned for an unknown webhook id.
	ErrNotFound = errors.New("webhook not found")
	// ErrDuplicate is returned when another webhook has the same event and target URL
	// (compared case-insensitively, as Ghost compares them).
	ErrDuplicate = errors.New("target URL has already been used for this event")
	// ErrUnknownIntegration is returned for an integration_id that names no integration.
	ErrUnknownIntegration = errors.New("integration_id does not match any existing integration")
)

// Nullable is an optional, nullable field of an edit: left as it is unless Set, and
// cleared when Set with a nil Value (JSON null).
type Nullable struct {
	Set   bool
	Value *string
}

// Value is a Nullable set to s.
func Value(s string) Nullable { return Nullable{Set: true, Value: &s} }

// Input is what a caller may set. On Edit, nil pointers and unset Nullables are left as
// they are.
type Input struct {
	Event      *string
	TargetURL  *string
	Name       Nullable // "" is stored as no name, as Ghost stores it
	Secret     Nullable // "" is stored as no secret
	APIVersion *string
	// IntegrationID is the owning integration, set by Add only: a webhook never changes
	// integration (Ghost's edit ignores integration_id too).
	IntegrationID *string
	// Status re-enables ("active") or disables ("disabled") a webhook.
	Status *string
	// StripeSignature marks the webhook to receive Stripe-Signature on Stripe's events.
	// Only operators set it (the CLI); the Admin API never does. Changing a marked
	// webhook's event or target URL without setting it again clears it, so the mark
	// never follows a webhook somewhere the operator did not say.
	StripeSignature *bool
	// Ordered makes the webhook ordered or not. Only operators set it (the CLI, the
	// audit API's keys); Ghost's Admin API has no such field.
	Ordered *bool
}

// GenerateSecret makes a Standard Webhooks secret: "whsec_" and 32 random bytes in base64.
func GenerateSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b), nil
}

// ValidateTargetURL accepts an absolute http(s) URL of at most 2000 characters. Ghost
// also takes relative references and other schemes; the relay cannot deliver to those.
func ValidateTargetURL(s string) error {
	if s == "" {
		return &invalid.Error{Field: "target_url", Message: "target_url is required."}
	}
	if utf8.RuneCountInString(s) > 2000 {
		return &invalid.Error{Field: "target_url", Message: "target_url must be at most 2000 characters."}
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return &invalid.Error{Field: "target_url", Message: fmt.Sprintf("target_url must be an absolute http:// or https:// URL, got %q.", truncate(s, 100))}
	}
	return nil
}

// ValidateEvent checks the shape of an event pattern; whether the name is registered is
// checked by the database (relay.check_webhook), which knows the registry.
func ValidateEvent(s string) error {
	switch {
	case s == "":
		return &invalid.Error{Field: "event", Message: "event is required."}
	case utf8.RuneCountInString(s) > 50:
		return &invalid.Error{Field: "event", Message: "event must be at most 50 characters."}
	case s != strings.ToLower(s):
		return &invalid.Error{Field: "event", Message: fmt.Sprintf("event must be lowercase, got %q.", s)}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// DefaultAPIVersion is a new webhook's api_version when none is given: the Ghost
// version whose Admin API the relay answers as (Ghost uses its own version).
const DefaultAPIVersion = "v6.65"

// Store reads and writes relay.webhooks. Pool is a pool, or a transaction when a change
// must commit with something else (the console records who made it in the same one).
type Store struct{ Pool store.Beginner }

const columns = `id, event, target_url, name, secret, api_version, integration_id, status,
	disabled_reason, stripe_signature, ordered, last_triggered_at, last_triggered_status, last_triggered_error, created_at, updated_at`

func scan(row pgx.Row) (Webhook, error) {
	var w Webhook
	err := row.Scan(&w.ID, &w.Event, &w.TargetURL, &w.Name, &w.Secret, &w.APIVersion, &w.IntegrationID,
		&w.Status, &w.DisabledReason, &w.StripeSignature, &w.Ordered, &w.LastTriggeredAt, &w.LastTriggeredStatus, &w.LastTriggeredError,
		&w.CreatedAt, &w.UpdatedAt)
	return w, err
}

// Add creates a webhook. Event and TargetURL are required.
func (s Store) Add(ctx context.Context, in Input) (Webhook, error) {
	if in.Event == nil || in.TargetURL == nil {
		if in.Event == nil {
			return Webhook{}, ValidateEvent("")
		}
		return Webhook{}, ValidateTargetURL("")
	}
	if err := validate(in); err != nil {
		return Webhook{}, err
	}
	apiVersion := DefaultAPIVersion
	if in.APIVersion != nil && *in.APIVersion != "" {
		apiVersion = *in.APIVersion
	}
	stripeSig := in.StripeSignature != nil && *in.StripeSignature
	ordered := in.Ordered != nil && *in.Ordered
	row := s.Pool.QueryRow(ctx, `INSERT INTO relay.webhooks (event, target_url, name, secret, api_version, integration_id, stripe_signature, ordered)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+columns,
		*in.Event, *in.TargetURL, emptyNil(in.Name.Value), emptyNil(in.Secret.Value), apiVersion, in.IntegrationID, stripeSig, ordered)
	w, err := scan(row)
	if err != nil {
		return Webhook{}, mapError(err)
	}
	return w, nil
}

// ValidateStatus accepts what an edit may set a webhook's status to.
func ValidateStatus(s string) error {
	if s != "active" && s != "disabled" {
		return &invalid.Error{Field: "status", Message: "status must be active or disabled."}
	}
	return nil
}

// Edit changes the fields set in in; in.IntegrationID is ignored.
func (s Store) Edit(ctx context.Context, id string, in Input) (Webhook, error) {
	if err := validate(in); err != nil {
		return Webhook{}, err
	}
	if in.Status != nil {
		if err := ValidateStatus(*in.Status); err != nil {
			return Webhook{}, err
		}
	}
	var w Webhook
	// One transaction: the fields change and, when the edit disables the webhook, its
	// pending work ends with it (store.DisableWebhook, the rule a 410 and the
	// auto-disable follow too).
	err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		var err error
		w, err = scan(tx.QueryRow(ctx, `UPDATE relay.webhooks SET
			event = coalesce($2, event),
			target_url = coalesce($3, target_url),
			name = CASE WHEN $4 THEN nullif($5, '') ELSE name END,
			secret = CASE WHEN $6 THEN nullif($7, '') ELSE secret END,
			api_version = coalesce($8, api_version),
			status = CASE WHEN $9::text = 'active' THEN 'active' ELSE status END,
			disabled_reason = CASE WHEN $9::text = 'active' THEN NULL ELSE disabled_reason END,
			stripe_signature = CASE WHEN $10::boolean IS NOT NULL THEN $10
			                        WHEN ($2::text IS NOT NULL AND $2 <> event) OR ($3::text IS NOT NULL AND $3 <> target_url) THEN false
			                        ELSE stripe_signature END,
			ordered = coalesce($11, ordered),
			updated_at = now()
			WHERE id = $1 RETURNING `+columns,
			id, in.Event, in.TargetURL, in.Name.Set, in.Name.Value, in.Secret.Set, in.Secret.Value, in.APIVersion, in.Status, in.StripeSignature, in.Ordered))
		if err != nil || in.Status == nil || *in.Status != "disabled" || w.Status != "active" {
			return err
		}
		if _, _, err := store.DisableWebhook(ctx, tx, id, "disabled by operator", 0); err != nil {
			return err
		}
		w, err = scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM relay.webhooks WHERE id = $1`, id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Webhook{}, ErrNotFound
	}
	if err != nil {
		return Webhook{}, mapError(err)
	}
	return w, nil
}

// Remove deletes a webhook; its deliveries and attempts stay for audit, and pending
// ones are cancelled (by a trigger, so SQL deletes behave the same).
func (s Store) Remove(ctx context.Context, id string) error {
	tag, err := s.Pool.Exec(ctx, `DELETE FROM relay.webhooks WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("delete webhook %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Get returns one webhook.
func (s Store) Get(ctx context.Context, id string) (Webhook, error) {
	w, err := scan(s.Pool.QueryRow(ctx, `SELECT `+columns+` FROM relay.webhooks WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Webhook{}, ErrNotFound
	}
	if err != nil {
		return Webhook{}, fmt.Errorf("get webhook %s: %w", id, err)
	}
	return w, nil
}

// Owner returns the integration a webhook belongs to (nil: the operator's), or
// ErrNotFound.
func (s Store) Owner(ctx context.Context, id string) (*string, error) {
	var owner *string
	err := s.Pool.QueryRow(ctx, `SELECT integration_id FROM relay.webhooks WHERE id = $1`, id).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get webhook %s: %w", id, err)
	}
	return owner, nil
}

// ListOf returns the webhooks of one integration, oldest first.
func (s Store) ListOf(ctx context.Context, integrationID string) ([]Webhook, error) {
	return s.list(ctx, `SELECT `+columns+` FROM relay.webhooks WHERE integration_id = $1 ORDER BY created_at, id`, integrationID)
}

// List returns every webhook, oldest first.
func (s Store) List(ctx context.Context) ([]Webhook, error) {
	return s.list(ctx, `SELECT `+columns+` FROM relay.webhooks ORDER BY created_at, id`)
}

func (s Store) list(ctx context.Context, query string, args ...any) ([]Webhook, error) {
	rows, err := s.Pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Webhook, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	return out, nil
}

func validate(in Input) error {
	if in.Event != nil {
		if err := ValidateEvent(*in.Event); err != nil {
			return err
		}
	}
	if in.TargetURL != nil {
		if err := ValidateTargetURL(*in.TargetURL); err != nil {
			return err
		}
	}
	if in.Name.Value != nil && utf8.RuneCountInString(*in.Name.Value) > 191 {
		return &invalid.Error{Field: "name", Message: "name must be at most 191 characters."}
	}
	if sec := in.Secret.Value; sec != nil {
		if utf8.RuneCountInString(*sec) > 191 {
			return &invalid.Error{Field: "secret", Message: "secret must be at most 191 characters."}
		}
		if strings.HasPrefix(*sec, "whsec_") {
			if _, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(*sec, "whsec_")); err != nil {
				return &invalid.Error{Field: "secret", Message: "A secret that starts with whsec_ must be followed by base64 (the Standard Webhooks key)."}
			}
		}
	}
	if in.APIVersion != nil && utf8.RuneCountInString(*in.APIVersion) > 50 {
		return &invalid.Error{Field: "api_version", Message: "api_version must be at most 50 characters."}
	}
	return nil
}

func emptyNil(s *string) *string {
	if s == nil || *s == "" {
		return nil
	}
	return s
}

func mapError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505":
			return ErrDuplicate
		case "23503":
			return ErrUnknownIntegration
		case "22023":
			// relay.check_webhook: "unknown webhook event 'x'" or "... must be lowercase".
			return &invalid.Error{Field: "event", Message: upperFirst(pgErr.Message) + "."}
		case "23514", "22001":
			if pgErr.ConstraintName == "webhooks_stripe_signature_pattern" {
				return &invalid.Error{Field: "stripe_signature", Message: "Only a stripe.* or stripe.<type> webhook can receive Stripe's signature."}
			}
			return &invalid.Error{Field: "", Message: upperFirst(pgErr.Message) + "."}
		}
	}
	return fmt.Errorf("save webhook: %w", err)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
