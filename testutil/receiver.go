package testutil

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Received is one request as the receiver saw it.
type Received struct {
	At     time.Time
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// Receiver is a webhook endpoint on 127.0.0.1 that records every request. It is safe for
// concurrent use.
type Receiver struct {
	srv     *httptest.Server
	respond func(w http.ResponseWriter, r *http.Request, body []byte)

	mu      sync.Mutex
	reqs    []Received
	changed chan struct{} // closed and replaced on every request, to wake WaitFor
}

// NewReceiver starts a receiver that answers with respond (nil: 200 OK, empty body). A
// request is recorded when it arrives, before respond runs, so requests whose response
// is delayed or never sent are still counted. respond should return when r.Context() is
// done: the receiver cancels it in t.Cleanup, so a handler that simulates a hung endpoint
// does not block the test's end. The receiver is closed in t.Cleanup.
func NewReceiver(t testing.TB, respond func(w http.ResponseWriter, r *http.Request, body []byte)) *Receiver {
	t.Helper()
	rc := &Receiver{respond: respond, changed: make(chan struct{})}
	base, cancel := context.WithCancel(context.Background())
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	rc.srv.Config.BaseContext = func(net.Listener) context.Context { return base }
	rc.srv.Start()
	t.Cleanup(func() {
		cancel()
		rc.srv.CloseClientConnections()
		rc.srv.Close()
	})
	return rc
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	rec := Received{
		At:     time.Now(),
		Method: r.Method,
		Path:   r.URL.RequestURI(),
		Header: r.Header.Clone(),
		Body:   body,
	}
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, rec)
	close(rc.changed)
	rc.changed = make(chan struct{})
	rc.mu.Unlock()
	if err != nil {
		// The sender gave up mid-body; there is nobody to answer.
		return
	}
	if rc.respond == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	rc.respond(w, r, body)
}

// URL is the receiver's base URL (http://127.0.0.1:PORT); append any path.
func (rc *Receiver) URL() string { return rc.srv.URL }

// Requests returns a copy of everything received so far, in arrival order.
func (rc *Receiver) Requests() []Received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.snapshot()
}

// snapshot deep-copies the records so callers cannot race with, or corrupt, the log.
// Callers hold mu.
func (rc *Receiver) snapshot() []Received {
	out := make([]Received, len(rc.reqs))
	for i, r := range rc.reqs {
		r.Header = r.Header.Clone()
		r.Body = append([]byte(nil), r.Body...)
		out[i] = r
	}
	return out
}

// Count is the number of requests received so far.
func (rc *Receiver) Count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.reqs)
}

// WaitFor waits until at least n requests have arrived and returns them all; on timeout
// it fails the test. Like t.Fatal, call it from the test's goroutine only.
func (rc *Receiver) WaitFor(t testing.TB, n int, timeout time.Duration) []Received {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		rc.mu.Lock()
		if len(rc.reqs) >= n {
			out := rc.snapshot()
			rc.mu.Unlock()
			return out
		}
		got, changed := len(rc.reqs), rc.changed
		rc.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("testutil: receiver got %d request(s) within %v, want at least %d%s",
				got, timeout, n, rc.describe())
			return nil
		}
	}
}

// describe summarises what arrived, so a timeout message shows what did happen.
func (rc *Receiver) describe() string {
	reqs := rc.Requests()
	if len(reqs) == 0 {
		return ""
	}
	s := ":"
	for i, r := range reqs {
		if i == 10 {
			s += fmt.Sprintf("\n  ... and %d more", len(reqs)-i)
			break
		}
		s += fmt.Sprintf("\n  %s %s %s webhook-id=%q", r.At.Format("15:04:05.000"), r.Method, r.Path,
			r.Header.Get("webhook-id"))
	}
	return s
}

// ByWebhookID counts requests per webhook-id header, which is how tests spot duplicate
// or missing deliveries. Requests without the header count under "".
func (rc *Receiver) ByWebhookID() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make(map[string]int)
	for _, r := range rc.reqs {
		out[r.Header.Get("webhook-id")]++
	}
	return out
}

// Eventually polls cond until it returns true, failing the test after timeout. The
// optional msgAndArgs are a format string and its arguments for the failure message.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msgAndArgs ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := 5 * time.Millisecond
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testutil: condition not met within %v%s", timeout, formatMsg(msgAndArgs))
			return
		}
		time.Sleep(interval)
		// Back off gently: quick conditions resolve fast, slow ones do not spin.
		interval = min(interval*2, 100*time.Millisecond)
	}
}

func formatMsg(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return ""
	}
	if format, ok := msgAndArgs[0].(string); ok {
		return ": " + fmt.Sprintf(format, msgAndArgs[1:]...)
	}
	return ": " + fmt.Sprint(msgAndArgs...)
}
