package console_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// One headless Chromium per test binary, started by the first test that needs it and
// stopped by TestMain; each test works in a browser context of its own (its own
// cookies), so tests do not share sessions.
var browser struct {
	mu     sync.Mutex
	ctx    context.Context
	cancel []context.CancelFunc
	dir    string
	err    error
}

// chromiumPath finds Debian's chromium (CI installs it; see .ci/run).
func chromiumPath() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium on PATH: install Debian's chromium package (apt-get install chromium), as .ci/run does")
}

func sharedBrowser(t testing.TB) context.Context {
	t.Helper()
	browser.mu.Lock()
	defer browser.mu.Unlock()
	if browser.ctx != nil || browser.err != nil {
		if browser.err != nil {
			t.Fatalf("browser: %v", browser.err)
		}
		return browser.ctx
	}
	path, err := chromiumPath()
	if err != nil {
		browser.err = err
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "relay-console-chromium-*")
	if err != nil {
		browser.err = err
		t.Fatal(err)
	}
	// The flags that work on this kind of machine: no sandbox (root), no GPU, and none
	// of the background traffic the closed network refuses.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(dir),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-background-networking", true),
		chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	// The first run starts the browser, which lives as long as the context it ran on:
	// bctx itself, not one with a deadline.
	if err := chromedp.Do(bctx); err != nil {
		cancelBrowser()
		cancelAlloc()
		_ = os.RemoveAll(dir)
		browser.err = fmt.Errorf("start %s: %w", path, err)
		t.Fatal(browser.err)
	}
	browser.ctx, browser.dir = bctx, dir
	browser.cancel = []context.CancelFunc{cancelBrowser, cancelAlloc}
	return bctx
}

// stopBrowser closes the shared browser, waits for its process and removes its profile.
func stopBrowser() error {
	browser.mu.Lock()
	defer browser.mu.Unlock()
	if browser.ctx == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(browser.ctx, 20*time.Second)
	err := chromedp.Cancel(ctx)
	cancel()
	for _, c := range browser.cancel {
		c()
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	browser.ctx = nil
	return errors.Join(err, os.RemoveAll(browser.dir))
}

// tab opens a page in a browser context of the test's own, closed when the test ends.
// Every step it runs is bounded by timeout.
func tab(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(sharedBrowser(t), chromedp.WithNewBrowserContext())
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
	})
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return ctx
}

// screenshots is where the pages' screenshots go: $RELAY_CONSOLE_SCREENSHOTS, or a
// directory under the system's temporary directory. With
// RELAY_CONSOLE_UPDATE_SCREENSHOTS=1 they are also written to the package's
// screenshots/ directory, whose copies the README shows.
func screenshotDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("RELAY_CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "relay-console-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// shoot saves a full-page PNG of what the tab shows as name.png.
func shoot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := screenshotDir(t)
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	if os.Getenv("RELAY_CONSOLE_UPDATE_SCREENSHOTS") == "1" {
		if err := os.WriteFile(filepath.Join("screenshots", name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// stepTimeout bounds one step of a browser test.
const stepTimeout = 30 * time.Second

func step(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, stepTimeout)
}

// open navigates to u and waits for the page to load; it returns the HTTP status.
func open(t testing.TB, ctx context.Context, u string) int64 {
	t.Helper()
	sctx, cancel := step(ctx)
	defer cancel()
	resp, err := chromedp.RunResponse(sctx, chromedp.Navigate(u))
	if err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
	loaded(t, ctx)
	return resp.Status
}

// loaded waits until the page has loaded: a response has arrived before its document
// is parsed, and a click on the old document would go nowhere.
func loaded(t testing.TB, ctx context.Context) {
	t.Helper()
	sctx, cancel := step(ctx)
	defer cancel()
	for {
		done, err := chromedp.Run(sctx, chromedp.Evaluate[bool](`document.readyState === "complete"`))
		if err == nil && done {
			return
		}
		if sctx.Err() != nil {
			t.Fatalf("the page did not load: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// follow opens the link sel points to, as a click on it would.
func follow(t testing.TB, ctx context.Context, sel string) int64 {
	t.Helper()
	sctx, cancel := step(ctx)
	defer cancel()
	href, err := chromedp.Run(sctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q).href`, sel)))
	if err != nil || href == "" {
		t.Fatalf("no link %s: %v (the page: %s)", sel, err, pageText(ctx))
	}
	return open(t, ctx, href)
}

// click clicks the element sel and waits for the page it leads to.
func click(t testing.TB, ctx context.Context, sel string) int64 {
	t.Helper()
	sctx, cancel := step(ctx)
	defer cancel()
	resp, err := chromedp.RunResponse(sctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("click %s: %v (the page: %s)", sel, err, pageText(ctx))
	}
	loaded(t, ctx)
	if resp == nil {
		return 0
	}
	return resp.Status
}

func text(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	sctx, cancel := step(ctx)
	defer cancel()
	s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("read %s: %v (the page: %s)", sel, err, pageText(ctx))
	}
	return s
}

// pageText is what the page says, for a failure's message.
func pageText(ctx context.Context) string {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u, _ := chromedp.Run(sctx, chromedp.Location())
	s, err := chromedp.Run(sctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return u + ": " + err.Error()
	}
	return u + "\n" + s
}

func location(t testing.TB, ctx context.Context) string {
	t.Helper()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func fill(t testing.TB, ctx context.Context, sel, value string) {
	t.Helper()
	sctx, cancel := step(ctx)
	defer cancel()
	if err := chromedp.Do(sctx, chromedp.SetValue(chromedp.CSS(sel), value)); err != nil {
		t.Fatalf("fill %s: %v", sel, err)
	}
}

// reloadUntil reloads the page until its text contains want.
func reloadUntil(t testing.TB, ctx context.Context, sel, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := text(t, ctx, sel)
		if strings.Contains(got, want) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page never showed %q in %s; it shows:\n%s", want, sel, got)
		}
		time.Sleep(200 * time.Millisecond)
		sctx, cancel := step(ctx)
		_, err := chromedp.RunResponse(sctx, chromedp.Reload())
		cancel()
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
		loaded(t, ctx)
	}
}

// choose selects the option of value in the select sel, as a click on it would.
func choose(t testing.TB, ctx context.Context, sel, value string) {
	t.Helper()
	ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
		const s = document.querySelector(%q);
		s.value = %q;
		s.dispatchEvent(new Event("change", {bubbles: true}));
		return s.value === %q;
	})()`, sel, value, value)))
	if err != nil || !ok {
		t.Fatalf("choose %s in %s: %v", value, sel, err)
	}
}

// reloadUntilPresent reloads the page until an element matches sel.
func reloadUntilPresent(t testing.TB, ctx context.Context, sel string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		sctx, cancel := step(ctx)
		found, err := chromedp.Run(sctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q) !== null`, sel)))
		cancel()
		if err == nil && found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page never showed %s (%v); it shows: %s", sel, err, pageText(ctx))
		}
		time.Sleep(200 * time.Millisecond)
		sctx, cancel = step(ctx)
		_, err = chromedp.RunResponse(sctx, chromedp.Reload())
		cancel()
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
		loaded(t, ctx)
	}
}
