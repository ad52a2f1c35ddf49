package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/invalid"
	"github.com/relayhq/relay/relay/internal/status"
	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/relay/internal/webhook"
)

// done are the confirmations a page shows after a change redirected to it; links carry
// a code, never text, so nothing a link says is echoed into the page.
var done = map[string]string{
	"added":            "Webhook added.",
	"saved":            "Changes saved.",
	"disabled":         "Webhook disabled: its pending deliveries were cancelled.",
	"enabled":          "Webhook enabled: new events reach it again.",
	"deleted":          "Webhook deleted. Its deliveries and attempts stay in the audit trail.",
	"redelivered":      "Redelivery queued: the attempt starts within moments.",
	"redelivered-held": "Redelivery queued behind another delivery of its key, which is under way: it goes once that one is done.",
	"skipped":          "Delivery skipped: the next delivery of its key is due now.",
	"skipped-0":        "Delivery skipped. No later delivery of its key was waiting.",
}

type webhooksData struct {
	Hooks []hookRow
	Done  string
}

func (c *console) webhooks(w http.ResponseWriter, r *http.Request, s *session) error {
	var hooks []hookRow
	err := readTx(r.Context(), c.Pool, func(tx pgx.Tx) error {
		var err error
		hooks, err = listHooks(r.Context(), tx, "")
		return err
	})
	if err != nil {
		return err
	}
	c.render(w, r, s, http.StatusOK, "webhooks", "Webhooks", "webhooks", webhooksData{Hooks: hooks, Done: done[r.URL.Query().Get("done")]})
	return nil
}

type webhookData struct {
	Hook    hookRow
	Recent  []deliveryRow
	Changes []change
	Done    string
	Deleted bool
}

// webhookPage is one webhook: its state, its last 24 hours, its latest deliveries and
// every change made to it in the console. A deleted webhook's page still shows that
// history.
func (c *console) webhookPage(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	var d webhookData
	err := readTx(r.Context(), c.Pool, func(tx pgx.Tx) error {
		hooks, err := listHooks(r.Context(), tx, id)
		if err != nil {
			return err
		}
		if d.Changes, err = webhookChanges(r.Context(), tx, id, 200); err != nil {
			return err
		}
		if len(hooks) == 0 {
			if len(d.Changes) == 0 {
				return errNotFound
			}
			d.Deleted, d.Hook = true, hookRow{ID: id}
			return nil
		}
		d.Hook = hooks[0]
		d.Recent, _, _, err = listDeliveries(r.Context(), tx, deliveryFilter{Webhook: id})
		if len(d.Recent) > 10 {
			d.Recent = d.Recent[:10]
		}
		return err
	})
	if err != nil {
		return err
	}
	d.Done = done[r.URL.Query().Get("done")]
	title := d.Hook.Label()
	if d.Deleted {
		title = "Deleted webhook"
	}
	c.render(w, r, s, http.StatusOK, "webhook", title, "webhooks", d)
	return nil
}

// hookForm is the add and edit form, with what was entered and the errors to show
// next to each field. It never carries a secret back into the page.
type hookForm struct {
	Edit            bool
	ID              string
	Label           string
	EventChoice     string
	EventOther      string
	URL             string
	URLMasked       bool
	Name            string
	SecretMode      string
	HasSecret       bool
	StripeSignature bool
	Ordered         bool // the "deliver in order per post/member" checkbox
	Groups          []eventGroup
	Errors          map[string]string
}

type eventGroup struct {
	Label   string
	Options []eventOption
}

type eventOption struct {
	Value, Label string
}

// eventOther is the picker's choice that takes the typed name instead.
const eventOther = "other"

// eventGroups is the trigger-event picker: every event, then Ghost's 29 grouped by
// resource as Ghost's own admin screen groups them, each with its wildcard, then names
// registered with `relay events register`, then Stripe's.
func eventGroups(ctx context.Context, q store.Querier) ([]eventGroup, error) {
	rows, err := q.Query(ctx, `SELECT name, source FROM relay.event_types ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("read event names: %w", err)
	}
	type et struct{ name, source string }
	names, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (et, error) {
		var e et
		return e, r.Scan(&e.name, &e.source)
	})
	if err != nil {
		return nil, fmt.Errorf("read event names: %w", err)
	}
	order := []struct{ key, label, wildcard, wildLabel string }{
		{"site", "Site", "", ""},
		{"post", "Posts", "post.*", "post.* — every post event"},
		{"page", "Pages", "page.*", "page.* — every page event"},
		{"tag", "Tags", "tag.*", "tag.* — tag.added, tag.edited, tag.deleted"},
		{"member", "Members", "member.*", "member.* — every member event"},
	}
	byKey := map[string]int{}
	groups := []eventGroup{{Label: "Everything", Options: []eventOption{{"*", "* — every event"}}}}
	for _, o := range order {
		g := eventGroup{Label: o.label}
		if o.wildcard != "" {
			g.Options = append(g.Options, eventOption{o.wildcard, o.wildLabel})
		}
		byKey[o.key] = len(groups)
		groups = append(groups, g)
	}
	custom := eventGroup{Label: "Registered with relay events register"}
	slices.SortStableFunc(names, func(a, b et) int { return lifecycleRank(a.name) - lifecycleRank(b.name) })
	for _, n := range names {
		if n.source != "ghost" {
			custom.Options = append(custom.Options, eventOption{n.name, n.name})
			continue
		}
		key, _, _ := strings.Cut(n.name, ".")
		if strings.Contains(n.name, ".tag.") {
			key = "tag" // post.tag.attached and friends sit with the tags, as in Ghost
		}
		if i, ok := byKey[key]; ok {
			groups[i].Options = append(groups[i].Options, eventOption{n.name, n.name})
		}
	}
	if len(custom.Options) > 0 {
		groups = append(groups, custom)
	}
	groups = append(groups,
		eventGroup{Label: "Stripe", Options: []eventOption{{"stripe.*", "stripe.* — every Stripe event"}}},
		eventGroup{Label: "Other", Options: []eventOption{{eventOther, "Another name or pattern (type it below)…"}}})
	return groups, nil
}

// lifecycleRank orders a resource's events as they happen to it, as Ghost lists them.
func lifecycleRank(name string) int {
	for i, suffix := range []string{".added", ".edited", ".published", ".published.edited", ".unpublished", ".scheduled",
		".unscheduled", ".rescheduled", ".attached", ".detached", ".deleted", ".changed"} {
		if strings.HasSuffix(name, suffix) && !(suffix == ".edited" && strings.HasSuffix(name, ".published.edited")) {
			return i
		}
	}
	return 99
}

// inWords turns the webhook rules' messages, which name fields as the API spells them
// ("target_url must be ..."), into a sentence about the form's field.
func inWords(msg string) string {
	for field, words := range map[string]string{"target_url ": "The URL ", "event ": "The event ", "name ": "The name ",
		"secret ": "The secret ", "Unknown webhook event ": "No event is called "} {
		if rest, ok := strings.CutPrefix(msg, field); ok {
			return words + rest
		}
	}
	return msg
}

func (c *console) newWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	f := hookForm{SecretMode: "generate"}
	return c.renderForm(w, r, s, http.StatusOK, f)
}

func (c *console) renderForm(w http.ResponseWriter, r *http.Request, s *session, status int, f hookForm) error {
	err := readTx(r.Context(), c.Pool, func(tx pgx.Tx) error {
		var err error
		f.Groups, err = eventGroups(r.Context(), tx)
		return err
	})
	if err != nil {
		return err
	}
	// A choice that is not in the picker (an edited webhook's pattern, say) shows as
	// typed text.
	if f.EventChoice != "" && f.EventChoice != eventOther && !inGroups(f.Groups, f.EventChoice) {
		f.EventOther, f.EventChoice = f.EventChoice, eventOther
	}
	title := "Add a webhook"
	if f.Edit {
		title = "Edit " + f.Label
	}
	c.render(w, r, s, status, "webhook-form", title, "webhooks", f)
	return nil
}

func inGroups(groups []eventGroup, v string) bool {
	for _, g := range groups {
		for _, o := range g.Options {
			if o.Value == v {
				return true
			}
		}
	}
	return false
}

// readForm reads the add and edit form's fields.
func readForm(r *http.Request) hookForm {
	f := hookForm{
		EventChoice: strings.TrimSpace(r.PostFormValue("event")),
		EventOther:  strings.TrimSpace(r.PostFormValue("event_other")),
		URL:         strings.TrimSpace(r.PostFormValue("target_url")),
		Name:        strings.TrimSpace(r.PostFormValue("name")),
		SecretMode:  r.PostFormValue("secret_mode"),
		Ordered:     r.PostFormValue("ordered") == "yes",
		Errors:      map[string]string{},
	}
	return f
}

func (f hookForm) event() string {
	if f.EventChoice == eventOther || f.EventChoice == "" {
		return f.EventOther
	}
	return f.EventChoice
}

// fieldError puts a validation error next to its field (in words, as the webhook rules
// word it).
func (f *hookForm) fieldError(err error) bool {
	var inv *invalid.Error
	switch {
	case errors.Is(err, webhook.ErrDuplicate):
		f.Errors["target_url"] = "Another webhook already sends this event to this URL."
	case errors.As(err, &inv):
		field := inv.Field
		switch field {
		case "event", "target_url", "name", "secret":
		case "stripe_signature":
			field = "event"
		default:
			field = "form"
		}
		f.Errors[field] = inWords(inv.Message)
	default:
		return false
	}
	return true
}

// addWebhook creates a webhook of the operator's (no integration), as `relay webhooks
// add` does. A generated secret is shown on the answer to this request, and never again.
func (c *console) addWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	f := readForm(r)
	ev := f.event()
	if ev == "" {
		f.Errors["event"] = "Choose the event that triggers this webhook."
	}
	if f.URL == "" {
		f.Errors["target_url"] = "Enter the URL the relay should POST to."
	} else if err := webhook.ValidateTargetURL(f.URL); err != nil {
		f.fieldError(err)
	}
	in := webhook.Input{Event: &ev, TargetURL: &f.URL, Ordered: &f.Ordered}
	if f.Name != "" {
		in.Name = webhook.Value(f.Name)
	}
	var secret string
	switch f.SecretMode {
	case "generate":
		var err error
		if secret, err = webhook.GenerateSecret(); err != nil {
			return err
		}
		in.Secret = webhook.Value(secret)
	case "set":
		secret = r.PostFormValue("secret")
		if secret == "" {
			f.Errors["secret"] = "Enter the secret, or choose to generate one or to sign nothing."
		}
		in.Secret = webhook.Value(secret)
	case "none":
	default:
		f.SecretMode = "generate"
		f.Errors["secret"] = "Choose how deliveries are signed."
	}
	if len(f.Errors) > 0 {
		return c.renderForm(w, r, s, http.StatusUnprocessableEntity, f)
	}
	var wh webhook.Webhook
	err := pgx.BeginFunc(r.Context(), c.Pool, func(tx pgx.Tx) error {
		var err error
		if wh, err = (webhook.Store{Pool: tx}).Add(r.Context(), in); err != nil {
			return err
		}
		detail := fmt.Sprintf("event %s, URL %s, %s", wh.Event, webhook.MaskURL(wh.TargetURL), secretWords(f.SecretMode))
		if wh.Ordered {
			detail += ", ordered"
		}
		return recordChange(r.Context(), tx, s, "added the webhook", target{WebhookID: wh.ID}, detail)
	})
	if f.fieldError(err) {
		return c.renderForm(w, r, s, http.StatusUnprocessableEntity, f)
	}
	if err != nil {
		return err
	}
	c.Log.Info().Str("key_id", s.KeyID).Str("webhook_id", wh.ID).Str("event", wh.Event).Msg("webhook added in the console")
	if f.SecretMode == "generate" {
		c.render(w, r, s, http.StatusCreated, "secret", "Webhook added", "webhooks", secretData{ID: wh.ID, Label: label(wh), Secret: secret, Added: true})
		return nil
	}
	http.Redirect(w, r, "/ui/webhooks/"+wh.ID+"?done=added", http.StatusSeeOther)
	return nil
}

func secretWords(mode string) string {
	switch mode {
	case "generate":
		return "a generated secret"
	case "set":
		return "a secret entered by hand"
	}
	return "no secret"
}

func label(wh webhook.Webhook) string {
	if wh.Name != nil && *wh.Name != "" {
		return *wh.Name
	}
	return wh.Event
}

// secretData is the one page that shows a secret: the answer to the request that made it.
type secretData struct {
	ID, Label, Secret string
	Added             bool
}

func (c *console) getHook(ctx context.Context, id string) (webhook.Webhook, error) {
	wh, err := webhook.Store{Pool: c.Pool}.Get(ctx, id)
	if errors.Is(err, webhook.ErrNotFound) {
		return wh, errNotFound
	}
	return wh, err
}

func (c *console) editWebhookPage(w http.ResponseWriter, r *http.Request, s *session) error {
	wh, err := c.getHook(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	masked := webhook.MaskURL(wh.TargetURL)
	f := hookForm{Edit: true, ID: wh.ID, Label: label(wh), EventChoice: wh.Event, URL: masked, URLMasked: masked != wh.TargetURL,
		Name: deref(wh.Name), SecretMode: "keep", HasSecret: wh.Secret != nil, StripeSignature: wh.StripeSignature, Ordered: wh.Ordered}
	return c.renderForm(w, r, s, http.StatusOK, f)
}

// editWebhook changes what the form changed. The URL field shows the masked URL; left
// as it was, the URL (and whatever the mask hides) stays as it is.
func (c *console) editWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	wh, err := c.getHook(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	f := readForm(r)
	f.Edit, f.ID, f.Label, f.HasSecret, f.StripeSignature = true, wh.ID, label(wh), wh.Secret != nil, wh.StripeSignature
	masked := webhook.MaskURL(wh.TargetURL)
	f.URLMasked = masked != wh.TargetURL
	var in webhook.Input
	var what []string
	if ev := f.event(); ev == "" {
		f.Errors["event"] = "Choose the event that triggers this webhook."
	} else if ev != wh.Event {
		in.Event = &ev
		what = append(what, fmt.Sprintf("event %s → %s", wh.Event, ev))
	}
	switch {
	case f.URL == "":
		f.Errors["target_url"] = "Enter the URL the relay should POST to."
	case f.URL != masked && f.URL != wh.TargetURL:
		if err := webhook.ValidateTargetURL(f.URL); err != nil {
			f.fieldError(err)
		}
		in.TargetURL = &f.URL
		what = append(what, fmt.Sprintf("URL %s → %s", masked, webhook.MaskURL(f.URL)))
	}
	if f.Name != deref(wh.Name) {
		in.Name = webhook.Value(f.Name)
		what = append(what, fmt.Sprintf("name %q → %q", deref(wh.Name), f.Name))
	}
	switch f.SecretMode {
	case "keep", "":
		f.SecretMode = "keep"
	case "remove":
		if wh.Secret != nil {
			in.Secret = webhook.Value("")
			what = append(what, "secret removed: deliveries are no longer signed")
		}
	case "set":
		sec := r.PostFormValue("secret")
		if sec == "" {
			f.Errors["secret"] = "Enter the new secret, or keep the current one."
		}
		in.Secret = webhook.Value(sec)
		what = append(what, "secret replaced by one entered by hand")
	default:
		f.SecretMode = "keep"
		f.Errors["secret"] = "Choose what happens to the secret."
	}
	if f.Ordered != wh.Ordered {
		in.Ordered = &f.Ordered
	}
	if len(f.Errors) > 0 {
		return c.renderForm(w, r, s, http.StatusUnprocessableEntity, f)
	}
	if len(what) == 0 && in.Ordered == nil {
		http.Redirect(w, r, "/ui/webhooks/"+wh.ID, http.StatusSeeOther)
		return nil
	}
	if wh.StripeSignature && (in.Event != nil || in.TargetURL != nil) {
		what = append(what, "Stripe-Signature mark cleared")
	}
	err = pgx.BeginFunc(r.Context(), c.Pool, func(tx pgx.Tx) error {
		what := what
		switch {
		case in.Ordered != nil && *in.Ordered:
			what = append(what, "made ordered: its deliveries created from now on go one at a time per key")
		case in.Ordered != nil:
			// The held deliveries that turning it off lets go (relay.release_unordered),
			// counted in this transaction, before the edit.
			counts, err := status.ReadWebhookCounts(r.Context(), tx, wh.ID)
			if err != nil {
				return err
			}
			held := counts[wh.ID].Held
			what = append(what, fmt.Sprintf("no longer ordered: %d held %s let go", held, plural(held, "delivery", "deliveries")))
		}
		if _, err := (webhook.Store{Pool: tx}).Edit(r.Context(), wh.ID, in); err != nil {
			return err
		}
		return recordChange(r.Context(), tx, s, "edited the webhook", target{WebhookID: wh.ID}, strings.Join(what, "; "))
	})
	if f.fieldError(err) {
		return c.renderForm(w, r, s, http.StatusUnprocessableEntity, f)
	}
	if errors.Is(err, webhook.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	c.Log.Info().Str("key_id", s.KeyID).Str("webhook_id", wh.ID).Msg("webhook edited in the console")
	http.Redirect(w, r, "/ui/webhooks/"+wh.ID+"?done=saved", http.StatusSeeOther)
	return nil
}

// disableWebhook disables the webhook and cancels its pending deliveries, with who did
// it as the reason (store.DisableWebhook, the rule every disabling follows).
func (c *console) disableWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	err := pgx.BeginFunc(r.Context(), c.Pool, func(tx pgx.Tx) error {
		disabled, cancelled, err := store.DisableWebhook(r.Context(), tx, id, "disabled in the console by "+s.KeyName, 0)
		if err != nil || !disabled {
			return err
		}
		return recordChange(r.Context(), tx, s, "disabled the webhook", target{WebhookID: id},
			fmt.Sprintf("%d pending %s cancelled", cancelled, plural(cancelled, "delivery", "deliveries")))
	})
	if err != nil {
		return err
	}
	if _, err := c.getHook(r.Context(), id); err != nil {
		return err
	}
	c.Log.Info().Str("key_id", s.KeyID).Str("webhook_id", id).Msg("webhook disabled in the console")
	http.Redirect(w, r, "/ui/webhooks/"+id+"?done=disabled", http.StatusSeeOther)
	return nil
}

func (c *console) enableWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	active := "active"
	err := pgx.BeginFunc(r.Context(), c.Pool, func(tx pgx.Tx) error {
		var was string
		if err := tx.QueryRow(r.Context(), `SELECT status FROM relay.webhooks WHERE id = $1 FOR UPDATE`, id).Scan(&was); err != nil {
			return err
		}
		if was == active {
			return nil
		}
		if _, err := (webhook.Store{Pool: tx}).Edit(r.Context(), id, webhook.Input{Status: &active}); err != nil {
			return err
		}
		return recordChange(r.Context(), tx, s, "enabled the webhook", target{WebhookID: id}, "")
	})
	if err != nil {
		return err
	}
	c.Log.Info().Str("key_id", s.KeyID).Str("webhook_id", id).Msg("webhook enabled in the console")
	http.Redirect(w, r, "/ui/webhooks/"+id+"?done=enabled", http.StatusSeeOther)
	return nil
}

type confirmData struct {
	ID, Label, URL string
	Pending        int64
	HasSecret      bool
}

func (c *console) confirmPage(w http.ResponseWriter, r *http.Request, s *session, page, title string) error {
	wh, err := c.getHook(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	d := confirmData{ID: wh.ID, Label: label(wh), URL: webhook.MaskURL(wh.TargetURL), HasSecret: wh.Secret != nil}
	if err := c.Pool.QueryRow(r.Context(), `SELECT count(*) FROM relay.deliveries WHERE webhook_id = $1 AND status = 'pending'`, wh.ID).Scan(&d.Pending); err != nil {
		return err
	}
	c.render(w, r, s, http.StatusOK, page, title+" "+d.Label, "webhooks", d)
	return nil
}

func (c *console) rotateSecretPage(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.confirmPage(w, r, s, "rotate", "Rotate the secret of")
}

// rotateSecret gives the webhook a new generated secret, shown on this answer only.
// The old one stops signing at once: the receiver needs the new one.
func (c *console) rotateSecret(w http.ResponseWriter, r *http.Request, s *session) error {
	wh, err := c.getHook(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	secret, err := webhook.GenerateSecret()
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(r.Context(), c.Pool, func(tx pgx.Tx) error {
		if _, err := (webhook.Store{Pool: tx}).Edit(r.Context(), wh.ID, webhook.Input{Secret: webhook.Value(secret)}); err != nil {
			return err
		}
		return recordChange(r.Context(), tx, s, "rotated the secret", target{WebhookID: wh.ID}, "a new generated secret signs from now on")
	})
	if errors.Is(err, webhook.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	c.Log.Info().Str("key_id", s.KeyID).Str("webhook_id", wh.ID).Msg("webhook secret rotated in the console")
	c.render(w, r, s, http.StatusOK, "secret", "New secret", "webhooks", secretData{ID: wh.ID, Label: label(wh), Secret: secret})
	return nil
}

func (c *console) deleteWebhookPage(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.confirmPage(w, r, s, "delete", "Delete")
}

// deleteWebhook deletes the webhook: its pending deliveries are cancelled (by the
// trigger on relay.webhooks), its history stays.
func (c *console) deleteWebhook(w http.ResponseWriter, r *http.Request, s *session) error {
	wh, err := c.getHook(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(r.Context(), c.Pool, func(tx pgx.Tx) error {
		var pending int64
		if err := tx.QueryRow(r.Context(), `SELECT count(*) FROM relay.deliveries WHERE webhook_id = $1 AND status = 'pending'`, wh.ID).Scan(&pending); err != nil {
			return err
		}
		if err := (webhook.Store{Pool: tx}).Remove(r.Context(), wh.ID); err != nil {
			return err
		}
		return recordChange(r.Context(), tx, s, "deleted the webhook", target{WebhookID: wh.ID},
			fmt.Sprintf("event %s, URL %s; %d pending %s cancelled", wh.Event, webhook.MaskURL(wh.TargetURL), pending, plural(pending, "delivery", "deliveries")))
	})
	if errors.Is(err, webhook.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	c.Log.Info().Str("key_id", s.KeyID).Str("webhook_id", wh.ID).Msg("webhook deleted in the console")
	http.Redirect(w, r, "/ui/webhooks?done=deleted", http.StatusSeeOther)
	return nil
}
