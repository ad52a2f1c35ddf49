package ghostsite_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/ghostadmin"
	"github.com/relayhq/relay/relay/internal/ghostsite"
	"github.com/relayhq/relay/relay/internal/sealbox"
	"github.com/relayhq/relay/relay/signing"
	"github.com/relayhq/relay/testutil"
	"github.com/relayhq/relay/testutil/ghost"
)

func TestMain(m *testing.M) { testutil.Main(m, ghost.StopShared) }

func newClient(siteURL, key string) (*ghostadmin.Client, error) {
	return ghostadmin.New(siteURL, key, &http.Client{Timeout: 15 * time.Second})
}

// With a key-encryption key, a connected site's Admin API key and inbound secret are
// stored sealed: a reader of the database finds neither, and a relay without the key
// refuses the site's requests (503, its own configuration) instead of accepting forgeries.
func TestSiteSecretsAreSealedUnderTheKEK(t *testing.T) {
	site := ghost.Shared(t)
	db := testutil.NewDB(t)
	box, err := sealbox.New([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	st := ghostsite.Store{Pool: db.Pool, Box: box}
	ctx := context.Background()
	res, err := st.Connect(ctx, ghostsite.ConnectInput{SiteURL: site.URL + "/", AdminKey: site.AdminKey(),
		RelayURL: "http://127.0.0.1:9", Events: []string{"tag.added"}}, newClient)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := st.Disconnect(context.Background(), res.Site.ID, newClient); err != nil {
			t.Errorf("disconnect: %v", err)
		}
	})
	if res.Site.URL != site.URL || !res.Site.Encrypted || len(res.Site.Webhooks) != 1 {
		t.Fatalf("connected site: %+v", res.Site)
	}
	var plainA, plainI *string
	if err := db.Pool.QueryRow(ctx, `SELECT admin_secret_plain, inbound_secret_plain FROM relay.ghost_sites`).Scan(&plainA, &plainI); err != nil {
		t.Fatal(err)
	}
	if plainA != nil || plainI != nil {
		t.Errorf("secrets stored in plaintext despite the KEK")
	}
	var raw string
	if err := db.Pool.QueryRow(ctx, `SELECT row_to_json(s)::text FROM relay.ghost_sites s`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	_, secret, _ := strings.Cut(site.AdminKey(), ":")
	if strings.Contains(raw, secret) {
		t.Errorf("the Admin API key's secret is readable in relay.ghost_sites")
	}

	// Ghost's own webhook on the site holds the inbound secret: sign with it as Ghost does.
	inbound := site.Query(t, `SELECT secret FROM webhooks WHERE id = ?`, res.Site.Webhooks["tag.added"])[0]["secret"].(string)
	body := []byte(`{"event":"tag.added","tag":{"current":{"id":"t"},"previous":{}}}`)
	sig := signing.GhostSignature(inbound, body, time.Now())
	id, err := st.Receive(ctx, res.Site.ID, "tag.added", body, sig, "v6.65", time.Now())
	if err != nil || id == "" {
		t.Fatalf("receive with the right secret: %q, %v", id, err)
	}
	_, err = (ghostsite.Store{Pool: db.Pool}).Receive(ctx, res.Site.ID, "tag.added", body, sig, "v6.65", time.Now())
	var ref *ghostsite.Refused
	if !errors.As(err, &ref) || ref.Status != http.StatusServiceUnavailable || !errors.Is(err, sealbox.ErrNoKEK) {
		t.Errorf("receive without the KEK: %v, want 503 ErrNoKEK", err)
	}
	// A stale signature (Ghost's timestamp more than 5 minutes off) is refused.
	_, err = st.Receive(ctx, res.Site.ID, "tag.added", body, signing.GhostSignature(inbound, body, time.Now().Add(-6*time.Minute)), "", time.Now())
	if !errors.As(err, &ref) || ref.Status != http.StatusUnauthorized {
		t.Errorf("stale signature: %v, want 401", err)
	}
	// The body's event must be the path's.
	_, err = st.Receive(ctx, res.Site.ID, "tag.added", []byte(`{"event":"tag.deleted"}`), signing.GhostSignature(inbound, []byte(`{"event":"tag.deleted"}`), time.Now()), "", time.Now())
	if !errors.As(err, &ref) || ref.Status != http.StatusBadRequest || ref.Reason != ghostsite.ReasonEventMismatch {
		t.Errorf("event mismatch: %v, want 400", err)
	}
}
