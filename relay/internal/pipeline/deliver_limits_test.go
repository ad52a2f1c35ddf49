package pipeline

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/netguard"
)

// TestDeliveryClientCapsHTTP2Responses: over HTTP/2 (ForceAttemptHTTP2, TLS) a receiver
// can neither make an attempt take megabytes of headers nor park megabytes of body in
// the client's flow-control buffers before the relay reads it.
func TestDeliveryClientCapsHTTP2Responses(t *testing.T) {
	t.Parallel()
	var pushed atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "want HTTP/2", http.StatusHTTPVersionNotSupported)
			return
		}
		if r.URL.Path == "/headers" {
			pad := strings.Repeat("a", 4000)
			for i := range 1000 { // 4 MB of headers
				w.Header().Set("X-Pad-"+strconv.Itoa(i), pad)
			}
		}
		w.WriteHeader(http.StatusInternalServerError)
		chunk := make([]byte, 16<<10)
		rc := http.NewResponseController(w)
		for pushed.Load() < 8<<20 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			pushed.Add(int64(len(chunk)))
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	allow, err := netguard.ParseAllowlist("127.0.0.1/32")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Targets, cfg.HTTPTimeout = allow, 5*time.Second
	transport := newTransport(cfg)
	transport.TLSClientConfig = &tls.Config{
		RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs,
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/headers", strings.NewReader("{}"))
	resp, err := transport.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("4 MB of HTTP/2 response headers accepted (status %d, proto %s)", resp.StatusCode, resp.Proto)
	}
	t.Logf("HTTP/2 huge headers: %v", err)

	// Without reading the body, the server can push only what flow control allows.
	pushed.Store(0)
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/body", strings.NewReader("{}"))
	resp, err = transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("proto %s, want HTTP/2", resp.Proto)
	}
	// That the server is stuck for good cannot be observed, only that it has not moved
	// for a while: it writes as fast as flow control lets it, so 100 ms without growth
	// means it is blocked, not slow. (A pause under load only makes last smaller.)
	last := int64(-1)
	for i := 0; i < 100 && pushed.Load() != last; i++ { // until it stops growing
		last = pushed.Load()
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("HTTP/2 body pushed before the relay read any: %d bytes", last)
	if last > 4*drainLimit {
		t.Errorf("the receiver pushed %d bytes into the client's buffers, want at most %d", last, 4*drainLimit)
	}
}
