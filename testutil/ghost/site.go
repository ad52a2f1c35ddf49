package ghost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts of a site's life. Generous: the first boot runs every migration (about 12 s on
// an idle 2-core machine) and CI runs several test binaries at once.
const (
	bootTimeout = 3 * time.Minute
	stopTimeout = 15 * time.Second
)

// Options configure one Ghost site.
type Options struct {
	// Production runs Ghost with NODE_ENV=production (default: development). Production
	// refuses webhook targets on private or loopback addresses unless Env sets
	// security__allowWebhookInternalIPs=true, and refuses to boot with Stripe keys on an
	// http:// URL. (Its staff device verification does not get in the way of Setup: a
	// fresh login right after setup needs no emailed code; checked on 6.65.)
	Production bool
	// Env holds extra Ghost settings as environment variables, "__" separating levels
	// (security__allowWebhookInternalIPs) or plain names Ghost reads (WEBHOOK_SECRET).
	Env map[string]string
	// Port is the port on 127.0.0.1 (0: a free one).
	Port int
}

// Site is one running Ghost with its own SQLite database.
type Site struct {
	URL        string // http://127.0.0.1:PORT, no trailing slash
	Port       int
	ContentDir string // Ghost's content path (data/ghost.db, themes, images, ...)
	LogPath    string // Ghost's stdout and stderr, appended over restarts

	home   Home
	client *http.Client // with the owner's session cookie once Setup has run

	mu      sync.Mutex // guards the fields below
	opts    Options
	proc    *exec.Cmd
	exited  chan struct{} // closed when proc has been waited for
	exitErr error         // proc's exit status, valid once exited is closed
	key     string        // the Admin API key Setup made
}

// Start installs Ghost if needed and starts a site in a fresh content directory under
// /tmp, returning once its Admin API answers. In t.Cleanup the site is stopped (SIGTERM,
// then SIGKILL; the process is always waited for) and its directory removed, unless the
// test failed: then it is kept for inspection and its path logged.
func Start(t testing.TB, opts Options) *Site {
	t.Helper()
	s, err := launch(context.Background(), opts)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("%v", err)
		}
		if t.Failed() {
			t.Logf("ghost: kept %s (Ghost's log: %s)", s.ContentDir, s.LogPath)
			return
		}
		if err := os.RemoveAll(s.ContentDir); err != nil {
			t.Errorf("ghost: remove %s: %v", s.ContentDir, err)
		}
	})
	return s
}

// launch is Start without a test: the caller owns stopping the site and removing its
// directory (see Shared).
func launch(ctx context.Context, opts Options) (*Site, error) {
	ctx, cancel := context.WithTimeout(ctx, installTimeout+bootTimeout)
	defer cancel()
	home, err := Install(ctx, nil)
	if err != nil {
		return nil, err
	}
	// /tmp, not t.TempDir: the directory outlives a failing test for inspection, and it is
	// readable by anyone should Ghost ever have to run as another user.
	dir, err := os.MkdirTemp("/tmp", "relay-ghost-site-*")
	if err != nil {
		return nil, fmt.Errorf("ghost: create content dir: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("ghost: chmod content dir: %w", err)
	}
	if err := copyTree(home.ContentTemplate(), dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("ghost: copy content template: %w", err)
	}
	port := opts.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	jar, _ := cookiejar.New(nil) // never fails without options
	s := &Site{
		URL:        "http://127.0.0.1:" + strconv.Itoa(port),
		Port:       port,
		ContentDir: dir,
		LogPath:    filepath.Join(dir, "ghost.log"),
		home:       home,
		client:     &http.Client{Jar: jar, Timeout: 60 * time.Second},
		opts:       Options{Production: opts.Production, Env: maps.Clone(opts.Env), Port: port},
	}
	if err := s.boot(ctx); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Restart stops the site and starts it again on the same port and database, with env
// merged into its settings: a key with an empty value is removed, any other replaces or
// adds. Ghost reads settings such as WEBHOOK_SECRET only at boot, hence the restart.
// The owner's session survives (sessions live in the database).
func (s *Site) Restart(t testing.TB, env map[string]string) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("%v", err)
	}
	s.mu.Lock()
	if s.opts.Env == nil {
		s.opts.Env = map[string]string{}
	}
	for k, v := range env {
		if v == "" {
			delete(s.opts.Env, k)
		} else {
			s.opts.Env[k] = v
		}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if err := s.boot(ctx); err != nil {
		t.Fatalf("%v", err)
	}
}

// Options returns the options the site runs with now (Env is a copy).
func (s *Site) Options() Options {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.opts
	o.Env = maps.Clone(o.Env)
	return o
}

// env is Ghost's whole environment. It is built from nothing but PATH, HOME and TMPDIR
// so that no variable of the test's environment (nconf reads them all as settings)
// changes what Ghost does.
func (s *Site) env() []string {
	mode := "development"
	if s.opts.Production {
		mode = "production"
	}
	settings := map[string]string{
		"NODE_ENV":                       mode,
		"url":                            s.URL,
		"server__host":                   "127.0.0.1",
		"server__port":                   strconv.Itoa(s.Port),
		"database__client":               "sqlite3", // Ghost maps it to better-sqlite3
		"database__connection__filename": filepath.Join(s.ContentDir, "data", "ghost.db"),
		"paths__contentPath":             s.ContentDir,
		"mail__transport":                "stub",
		"logging__transports":            `["stdout"]`,
		"logging__level":                 "info",
		"PATH":                           filepath.Join(s.home.NodeDir(), "bin") + string(os.PathListSeparator) + "/usr/local/bin:/usr/bin:/bin",
		"HOME":                           os.Getenv("HOME"),
	}
	if tmp := os.Getenv("TMPDIR"); tmp != "" {
		settings["TMPDIR"] = tmp
	}
	maps.Copy(settings, s.opts.Env)
	env := make([]string, 0, len(settings))
	for k, v := range settings {
		env = append(env, k+"="+v)
	}
	return env
}

// boot starts node and waits until the Admin API answers. The caller holds no lock.
func (s *Site) boot(ctx context.Context) error {
	logFile, err := os.OpenFile(s.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("ghost: open log: %w", err)
	}
	s.mu.Lock()
	cmd := exec.Command(s.home.Node(), "index.js")
	cmd.Dir = s.home.Ghost()
	cmd.Env = s.env()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: a stop reaches anything Ghost spawned, and a Ctrl-C meant
	// for `go test` does not kill Ghost before the cleanup can stop it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		_ = logFile.Close()
		return fmt.Errorf("ghost: start node: %w", err)
	}
	exited := make(chan struct{})
	s.proc, s.exited, s.exitErr = cmd, exited, nil
	s.mu.Unlock()
	// The waiter is owned by the site: stop waits for exited, so it never outlives it.
	go func() {
		err := cmd.Wait()
		_ = logFile.Close()
		s.mu.Lock()
		s.exitErr = err
		s.mu.Unlock()
		close(exited)
	}()

	probe := &http.Client{Timeout: 5 * time.Second}
	deadline := time.NewTimer(bootTimeout)
	defer deadline.Stop()
	for {
		if status, err := get(ctx, probe, s.URL+"/ghost/api/admin/site/"); err == nil && status == http.StatusOK {
			return nil
		}
		select {
		case <-exited:
			s.mu.Lock()
			err := s.exitErr
			s.mu.Unlock()
			return fmt.Errorf("ghost: Ghost exited while booting (%v)%s", err, logTail(s.LogPath, 30))
		case <-deadline.C:
			stopErr := s.stop()
			return errors.Join(fmt.Errorf("ghost: Admin API not answering after %v%s", bootTimeout, logTail(s.LogPath, 30)), stopErr)
		case <-ctx.Done():
			stopErr := s.stop()
			return errors.Join(fmt.Errorf("ghost: boot: %w", ctx.Err()), stopErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, c *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// stop ends the running process, if any: SIGTERM to its group (Ghost shuts down
// cleanly), SIGKILL after stopTimeout, and in both cases waits for the exit.
func (s *Site) stop() error {
	s.mu.Lock()
	cmd, exited := s.proc, s.exited
	s.proc = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-exited:
		return fmt.Errorf("ghost: Ghost ignored SIGTERM for %v and was killed%s", stopTimeout, logTail(s.LogPath, 10))
	case <-time.After(stopTimeout):
		return fmt.Errorf("ghost: Ghost (pid %d) still running after SIGKILL", pgid)
	}
}

// Running reports whether Ghost's process is alive (for tests of the harness).
func (s *Site) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// PID is the process id of the running Ghost, or 0.
func (s *Site) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.Process.Pid
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("ghost: find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("ghost: find a free port: %w", err)
	}
	return port, nil
}

// copyTree copies Ghost's content template (directories, files, symlinks as links).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			in, err := os.Open(path)
			if err != nil {
				return err
			}
			defer func() { _ = in.Close() }()
			out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, info.Mode().Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(out, in)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			return err
		default:
			return nil
		}
	})
}

// Query runs a read-only SQL query on the site's SQLite database with better-sqlite3 on
// Ghost's own node, and returns the rows. Ghost keeps some state, such as a webhook's
// last_triggered_*, where no Admin API endpoint reads it back. sql is the test's own
// text, never input; args are bound as parameters.
func (s *Site) Query(t testing.TB, sql string, args ...any) []map[string]any {
	t.Helper()
	rows, err := s.query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return rows
}

// querySource reads the database path, the SQL and its JSON-encoded parameters from
// argv, so nothing is ever spliced into the script.
const querySource = `
const Database = require('better-sqlite3');
const [file, sql, params] = process.argv.slice(1);
const db = new Database(file, {readonly: true, fileMustExist: true, timeout: 10000});
try { process.stdout.write(JSON.stringify(db.prepare(sql).all(...JSON.parse(params)))); }
finally { db.close(); }
`

func (s *Site) query(ctx context.Context, sql string, args ...any) ([]map[string]any, error) {
	if args == nil {
		args = []any{}
	}
	params, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("ghost: query parameters: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.home.Node(), "-e", querySource,
		filepath.Join(s.ContentDir, "data", "ghost.db"), sql, string(params))
	cmd.Dir = s.home.Ghost() // where require finds better-sqlite3
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ghost: query %q: %w: %s", sql, err, stderr.String())
	}
	var rows []map[string]any
	if err := json.Unmarshal(out, &rows); err != nil {
		return nil, fmt.Errorf("ghost: query %q: decode: %w", sql, err)
	}
	return rows, nil
}
