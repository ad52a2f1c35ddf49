package apikey_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/relayhq/relay/relay/internal/apikey"
	"github.com/relayhq/relay/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func TestSecretComesBackOnlyForItsActiveKeyAndItsKEK(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	kek := bytes.Repeat([]byte{0x42}, 32)
	st, err := apikey.NewStore(db.Pool, kek)
	if err != nil {
		t.Fatal(err)
	}
	a, fullA, err := st.Create(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := st.Create(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.Secret(ctx, a.ID)
	if err != nil || hex.EncodeToString(got) != strings.SplitN(fullA, ":", 2)[1] {
		t.Fatalf("Secret(a) = %x, %v; want the secret printed at creation", got, err)
	}

	// A sealed secret is bound to its key id: copied onto another row, it does not open.
	if _, err := db.Pool.Exec(ctx, `UPDATE relay.api_keys SET secret_sealed = (SELECT secret_sealed FROM relay.api_keys WHERE id = $1) WHERE id = $2`, a.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Secret(ctx, b.ID); err == nil {
		t.Errorf("a's sealed secret opened as b's")
	}

	plainStore, _ := apikey.NewStore(db.Pool, nil)
	if _, err := plainStore.Secret(ctx, a.ID); !errors.Is(err, apikey.ErrNoKEK) {
		t.Errorf("without a KEK: %v, want ErrNoKEK", err)
	}
	other, _ := apikey.NewStore(db.Pool, bytes.Repeat([]byte{0x43}, 32))
	if _, err := other.Secret(ctx, a.ID); !errors.Is(err, apikey.ErrWrongKEK) {
		t.Errorf("with another KEK: %v, want ErrWrongKEK", err)
	}

	for _, id := range []string{"0123456789abcdef01234567", "not-an-id", ""} {
		if _, err := st.Secret(ctx, id); !errors.Is(err, apikey.ErrUnknownKey) {
			t.Errorf("Secret(%q): %v, want ErrUnknownKey", id, err)
		}
	}
	first, err := st.Revoke(ctx, a.ID)
	if err != nil || first.RevokedAt == nil {
		t.Fatalf("revoke: %+v %v", first, err)
	}
	if _, err := st.Secret(ctx, a.ID); !errors.Is(err, apikey.ErrUnknownKey) {
		t.Errorf("revoked key: %v, want ErrUnknownKey", err)
	}
	again, err := st.Revoke(ctx, a.ID)
	if err != nil || !again.RevokedAt.Equal(*first.RevokedAt) {
		t.Errorf("revoking twice moved revoked_at: %v then %v (%v)", first.RevokedAt, again.RevokedAt, err)
	}
	if _, err := st.Revoke(ctx, "0123456789abcdef01234567"); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
}

// TestEachKeyIsCreatedWithAnIntegrationOfItsOwn: as a new custom integration in Ghost,
// with a slug of its name that no other integration has.
func TestEachKeyIsCreatedWithAnIntegrationOfItsOwn(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	st, _ := apikey.NewStore(db.Pool, nil)
	var got []apikey.Key
	for _, name := range []string{"My Site!", "my site", "", "Ünïcode only ✓"} {
		k, _, err := st.Create(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, k)
	}
	want := []apikey.Integration{
		{Type: "custom", Name: "My Site!", Slug: "my-site"},
		{Type: "custom", Name: "my site", Slug: "my-site-2"},
		{Type: "custom", Name: "Custom integration", Slug: "custom-integration"},
		{Type: "custom", Name: "Ünïcode only ✓", Slug: "n-code-only"},
	}
	seen := map[string]bool{}
	for i, k := range got {
		in := k.Integration
		if seen[in.ID] || !apikey.IDPattern.MatchString(in.ID) {
			t.Errorf("key %d: integration id %q (shared: %v)", i, in.ID, seen[in.ID])
		}
		seen[in.ID] = true
		in.ID = ""
		if in != want[i] {
			t.Errorf("key %d: integration %+v, want %+v", i, in, want[i])
		}
	}
	list, err := st.List(ctx)
	if err != nil || len(list) != 4 || list[1].Integration != got[1].Integration {
		t.Errorf("List: %+v %v", list, err)
	}
	if active, err := st.Lookup(ctx, got[0].ID); err != nil || active.IntegrationID != got[0].Integration.ID {
		t.Errorf("Lookup: %+v %v", active, err)
	}
}

// A console key signs in (its whole "id:secret", compared in constant time, sealed or
// not) and is unknown to the APIs; an integration's key is the other way round; a
// revoked or mistyped key signs in nowhere.
func TestConsoleKeysSignInAndOnlyThey(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	st, err := apikey.NewStore(db.Pool, bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	console, full, err := st.CreateConsole(ctx, "")
	if err != nil || console.Integration.Type != apikey.TypeConsole || console.Name != apikey.DefaultConsoleName || !console.Encrypted {
		t.Fatalf("CreateConsole: %+v, %v", console, err)
	}
	k, err := st.SignIn(ctx, " "+full+"\n")
	if err != nil || k.ID != console.ID || k.Integration.Type != apikey.TypeConsole {
		t.Errorf("SignIn with the console key: %+v, %v", k, err)
	}
	if _, err := st.Lookup(ctx, console.ID); !errors.Is(err, apikey.ErrUnknownKey) {
		t.Errorf("Lookup of a console key for the APIs: %v, want ErrUnknownKey", err)
	}
	custom, customFull, err := st.Create(ctx, "zapier")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.SignIn(ctx, customFull); !errors.Is(err, apikey.ErrNotConsoleKey) {
		t.Errorf("SignIn with an integration's key: %v, want ErrNotConsoleKey", err)
	}
	if _, err := st.Lookup(ctx, custom.ID); err != nil {
		t.Errorf("Lookup of an integration's key: %v", err)
	}
	id, secret, _ := strings.Cut(full, ":")
	flipped := []byte(secret)
	flipped[0] ^= 1
	if flipped[0] > 'f' || (flipped[0] > '9' && flipped[0] < 'a') {
		flipped[0] = '0'
	}
	for _, bad := range []string{id + ":" + string(flipped), customFull[:25] + secret, id, "", id + ":" + secret[:63], id + ":" + secret + "00"} {
		if _, err := st.SignIn(ctx, bad); !errors.Is(err, apikey.ErrUnknownKey) {
			t.Errorf("SignIn(%q): %v, want ErrUnknownKey", bad, err)
		}
	}
	if _, err := st.Revoke(ctx, console.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SignIn(ctx, full); !errors.Is(err, apikey.ErrUnknownKey) {
		t.Errorf("SignIn with a revoked key: %v, want ErrUnknownKey", err)
	}
}
