package console

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/ghostsite"
)

// stripeRow is a Stripe event the relay received, with what became of it.
type stripeRow struct {
	ID         string
	Type       string
	Livemode   bool
	ReceivedAt time.Time
	EventID    *string
	Counts     map[string]int
}

type stripeData struct {
	Rows  []stripeRow
	Next  string
	Paged bool
}

// stripeEvents lists relay.stripe_events newest first: every verified Stripe event
// once, the outbox event it became (none when its type is too long to emit), and its
// deliveries by status.
func (c *console) stripeEvents(w http.ResponseWriter, r *http.Request, s *session) error {
	var d stripeData
	var after *time.Time
	var afterID string
	if cur := r.URL.Query().Get("cursor"); cur != "" {
		b, err := base64.RawURLEncoding.DecodeString(cur)
		at, id, ok := strings.Cut(string(b), "|")
		t, terr := time.Parse(time.RFC3339Nano, at)
		if err != nil || !ok || terr != nil {
			c.refuse(w, r, s, http.StatusBadRequest, "Not a page of Stripe events", errBadCursor.Error())
			return nil
		}
		after, afterID, d.Paged = &t, id, true
	}
	err := readTx(r.Context(), c.Pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(r.Context(), `SELECT s.id, s.type, s.livemode, s.received_at, s.event_id::text,
			(SELECT json_object_agg(x.status, x.n) FROM (SELECT d.status, count(*) AS n FROM relay.deliveries d
			  WHERE d.event_id = s.event_id GROUP BY d.status) x)
			FROM relay.stripe_events s
			WHERE $1::timestamptz IS NULL OR (s.received_at, s.id) < ($1, $2)
			ORDER BY s.received_at DESC, s.id DESC LIMIT $3`, after, afterID, pageSize+1)
		if err != nil {
			return err
		}
		d.Rows, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (stripeRow, error) {
			var x stripeRow
			var counts []byte
			if err := r.Scan(&x.ID, &x.Type, &x.Livemode, &x.ReceivedAt, &x.EventID, &counts); err != nil {
				return x, err
			}
			x.Counts = map[string]int{}
			if counts != nil {
				return x, json.Unmarshal(counts, &x.Counts)
			}
			return x, nil
		})
		return err
	})
	if err != nil {
		return err
	}
	if len(d.Rows) > pageSize {
		d.Rows = d.Rows[:pageSize]
		last := d.Rows[len(d.Rows)-1]
		d.Next = query("/ui/stripe", "cursor", base64.RawURLEncoding.EncodeToString(
			[]byte(last.ReceivedAt.UTC().Format(time.RFC3339Nano)+"|"+last.ID)))
	}
	c.render(w, r, s, http.StatusOK, "stripe", "Stripe events", "stripe", d)
	return nil
}

type ghostData struct {
	Sites []ghostsite.Site
}

// ghostSites lists the connected Ghost sites (never their keys or secrets).
func (c *console) ghostSites(w http.ResponseWriter, r *http.Request, s *session) error {
	sites, err := c.GhostSites.List(r.Context())
	if err != nil {
		return err
	}
	c.render(w, r, s, http.StatusOK, "ghost", "Ghost sites", "ghost", ghostData{Sites: sites})
	return nil
}
