package ghost

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
)

// Webhook is a webhook as Ghost's Admin API returns it.
type Webhook struct {
	ID                  string  `json:"id"`
	Event               string  `json:"event"`
	TargetURL           string  `json:"target_url"`
	Name                *string `json:"name"`
	Secret              *string `json:"secret"`
	APIVersion          string  `json:"api_version"`
	IntegrationID       string  `json:"integration_id"`
	LastTriggeredAt     *string `json:"last_triggered_at"`
	LastTriggeredStatus *string `json:"last_triggered_status"`
	LastTriggeredError  *string `json:"last_triggered_error"`
	CreatedAt           string  `json:"created_at"`
	UpdatedAt           string  `json:"updated_at"`
}

// Post is the part of a Ghost post that tests use.
type Post struct {
	ID          string  `json:"id"`
	UUID        string  `json:"uuid"`
	Title       string  `json:"title"`
	Slug        string  `json:"slug"`
	HTML        string  `json:"html"`
	Status      string  `json:"status"`
	UpdatedAt   string  `json:"updated_at"`
	PublishedAt *string `json:"published_at"`
}

// Tag is the part of a Ghost tag that tests use.
type Tag struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Slug string `json:"slug"`
}

// Member is the part of a Ghost member that tests use.
type Member struct {
	ID    string `json:"id"`
	UUID  string `json:"uuid"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// AddWebhook adds a webhook with key's integration; secret "" sends none.
func (s *Site) AddWebhook(t testing.TB, key, event, targetURL, secret string) Webhook {
	t.Helper()
	w := map[string]any{"event": event, "target_url": targetURL}
	if secret != "" {
		w["secret"] = secret
	}
	var out struct{ Webhooks []Webhook }
	s.mustAdmin(t, key, http.MethodPost, "/webhooks/", map[string]any{"webhooks": []any{w}}, http.StatusCreated, &out)
	if len(out.Webhooks) != 1 {
		t.Fatalf("ghost: add webhook: %d webhooks in the answer", len(out.Webhooks))
	}
	return out.Webhooks[0]
}

// EditWebhook changes the given fields of webhook id.
func (s *Site) EditWebhook(t testing.TB, key, id string, fields map[string]any) Webhook {
	t.Helper()
	var out struct{ Webhooks []Webhook }
	s.mustAdmin(t, key, http.MethodPut, "/webhooks/"+url.PathEscape(id)+"/", map[string]any{"webhooks": []any{fields}}, http.StatusOK, &out)
	if len(out.Webhooks) != 1 {
		t.Fatalf("ghost: edit webhook: %d webhooks in the answer", len(out.Webhooks))
	}
	return out.Webhooks[0]
}

// DeleteWebhook deletes webhook id.
func (s *Site) DeleteWebhook(t testing.TB, key, id string) {
	t.Helper()
	s.mustAdmin(t, key, http.MethodDelete, "/webhooks/"+url.PathEscape(id)+"/", nil, http.StatusNoContent, nil)
}

// AddPost adds a post from HTML (?source=html) with the given status ("draft",
// "published", ...).
func (s *Site) AddPost(t testing.TB, key, title, html, status string) Post {
	t.Helper()
	return s.postCall(t, key, http.MethodPost, "/posts/?source=html", map[string]any{"title": title, "html": html, "status": status}, http.StatusCreated)
}

// EditPost changes the given fields of post id. Ghost refuses an edit without the post's
// current updated_at (collision detection), so it is read first unless fields has it.
func (s *Site) EditPost(t testing.TB, key, id string, fields map[string]any) Post {
	t.Helper()
	f := map[string]any{}
	for k, v := range fields {
		f[k] = v
	}
	if _, ok := f["updated_at"]; !ok {
		f["updated_at"] = s.GetPost(t, key, id).UpdatedAt
	}
	return s.postCall(t, key, http.MethodPut, "/posts/"+url.PathEscape(id)+"/?source=html", f, http.StatusOK)
}

// GetPost reads post id.
func (s *Site) GetPost(t testing.TB, key, id string) Post {
	t.Helper()
	return s.postCall(t, key, http.MethodGet, "/posts/"+url.PathEscape(id)+"/?formats=html", nil, http.StatusOK)
}

// DeletePost deletes post id.
func (s *Site) DeletePost(t testing.TB, key, id string) {
	t.Helper()
	s.mustAdmin(t, key, http.MethodDelete, "/posts/"+url.PathEscape(id)+"/", nil, http.StatusNoContent, nil)
}

func (s *Site) postCall(t testing.TB, key, method, path string, post map[string]any, want int) Post {
	t.Helper()
	var body any
	if post != nil {
		body = map[string]any{"posts": []any{post}}
	}
	var out struct{ Posts []Post }
	s.mustAdmin(t, key, method, path, body, want, &out)
	if len(out.Posts) != 1 {
		t.Fatalf("ghost: %s %s: %d posts in the answer", method, path, len(out.Posts))
	}
	return out.Posts[0]
}

// AddTag adds a tag.
func (s *Site) AddTag(t testing.TB, key, name string) Tag {
	t.Helper()
	var out struct{ Tags []Tag }
	s.mustAdmin(t, key, http.MethodPost, "/tags/", map[string]any{"tags": []any{map[string]string{"name": name}}}, http.StatusCreated, &out)
	if len(out.Tags) != 1 {
		t.Fatalf("ghost: add tag: %d tags in the answer", len(out.Tags))
	}
	return out.Tags[0]
}

// DeleteTag deletes tag id.
func (s *Site) DeleteTag(t testing.TB, key, id string) {
	t.Helper()
	s.mustAdmin(t, key, http.MethodDelete, "/tags/"+url.PathEscape(id)+"/", nil, http.StatusNoContent, nil)
}

// AddMember adds a member.
func (s *Site) AddMember(t testing.TB, key, email, name string) Member {
	t.Helper()
	var out struct{ Members []Member }
	s.mustAdmin(t, key, http.MethodPost, "/members/", map[string]any{"members": []any{map[string]string{"email": email, "name": name}}}, http.StatusCreated, &out)
	if len(out.Members) != 1 {
		t.Fatalf("ghost: add member: %d members in the answer", len(out.Members))
	}
	return out.Members[0]
}

// DeleteMember deletes member id.
func (s *Site) DeleteMember(t testing.TB, key, id string) {
	t.Helper()
	s.mustAdmin(t, key, http.MethodDelete, "/members/"+url.PathEscape(id)+"/", nil, http.StatusNoContent, nil)
}

// mustAdmin calls the Admin API and fails the test unless the status is want; out (if
// not nil) receives the decoded answer.
func (s *Site) mustAdmin(t testing.TB, key, method, path string, body any, want int, out any) {
	t.Helper()
	status, b, err := s.AdminDo(context.Background(), key, method, path, body)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if status != want {
		t.Fatalf("ghost: %s %s: HTTP %d, want %d: %.800s", method, path, status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("ghost: %s %s: decode answer: %v: %.300s", method, path, err, b)
		}
	}
}
