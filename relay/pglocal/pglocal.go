// Package pglocal runs a private PostgreSQL cluster from the server binaries installed on
// the machine. `relay run` uses it when no DATABASE_URL is given, and tests use it for a
// throwaway cluster.
//
// The cluster accepts only its owner. It listens on 127.0.0.1, where every connection
// must authenticate with scram-sha-256; its Unix socket sits in the 0700 data directory
// and takes peer authentication (the server's OS user as the role of the same name). The
// superuser's random password is kept in postgres.password, readable by the process that
// started the cluster alone; OwnerURL makes an unprivileged role that owns one database
// and writes its URL to database.url. The log (server.log) and chosen port (relay.port)
// are in the data directory too. When the caller is root the programs run as the
// ServerUser system account, because PostgreSQL refuses to run as root; that account
// needs none of the password files, which stay root's.
//
// It is meant for development and single-host use; production points DATABASE_URL at a
// managed server.
package pglocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Options configure Start.
type Options struct {
	DataDir string    // required; created if missing; initdb'd if it has no PG_VERSION
	Port    int       // 0 = pick a free port on 127.0.0.1, preferring the one this DataDir used last
	Fast    bool      // tests: fsync=off, synchronous_commit=off, full_page_writes=off
	Stdout  io.Writer // optional: where to copy initdb/pg_ctl output on failure
	BinDir  string    // the server binaries' directory; empty: FindBinDir

	// Settings are extra server settings (postgresql.conf names), applied after and so
	// overriding the ones above. Tests that Kill the server want
	// {"synchronous_commit": "on"}: with Fast alone an immediate shutdown loses commits
	// that clients were already told had succeeded.
	Settings map[string]string
}

// Superuser is the cluster's superuser role. initdb creates it with a random password,
// kept in the data directory's postgres.password.
const Superuser = "postgres"

const (
	confFile     = "relay.conf" // rewritten on every start: port, sockets, durability
	portFile     = "relay.port" // the port of the last start, reused when still free
	hbaFile      = "pg_hba.conf"
	URLFile      = "database.url" // the URL OwnerURL returned last, for psql "$(cat …)"
	logFile      = "server.log"
	includeLine  = "include_if_exists = '" + confFile + "'"
	startTimeout = 60 * time.Second // pg_ctl -t, and the readiness ping loop
	maxSocketLen = 107              // sun_path is 108 bytes including the NUL
	portAttempts = 4                // auto-picked ports can be stolen between probe and bind
)

// Server is a running (or stopped) local cluster. Its methods are safe for concurrent use.
type Server struct {
	binDir   string
	dataDir  string
	port     int
	fast     bool
	settings map[string]string
	stdout   io.Writer
	as       runAs
	// superPW is the superuser's password, read from (or, for a new cluster, written to)
	// postgres.password.
	superPW string

	attached bool

	mu sync.Mutex // serialises Stop/Restart/Kill so pg_ctl invocations do not race
}

// Start brings up the cluster in o.DataDir, creating and initialising it if needed, and
// returns once it accepts connections. When a server is already running on that data
// directory Start attaches to it instead (see Attached).
func Start(ctx context.Context, o Options) (*Server, error) {
	s, err := newServer(o)
	if err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	if err := s.start(ctx, o.Port); err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	return s, nil
}

// newServer checks o and finds what running the cluster needs: its directory, the
// server binaries, and who runs them.
func newServer(o Options) (*Server, error) {
	if o.DataDir == "" {
		return nil, errors.New("Options.DataDir is required")
	}
	if o.Port < 0 || o.Port > 65535 {
		return nil, fmt.Errorf("invalid port %d", o.Port)
	}
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return nil, fmt.Errorf("resolve data dir %s: %w", o.DataDir, err)
	}
	binDir := o.BinDir
	if binDir == "" {
		binDir, err = FindBinDir()
	} else {
		err = hasServerBinaries(binDir)
	}
	if err != nil {
		return nil, err
	}
	as, err := serverIdentity()
	if err != nil {
		return nil, err
	}
	for k, v := range o.Settings {
		if !validSettingName(k) || strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Errorf("invalid setting %q = %q", k, v)
		}
	}
	return &Server{binDir: binDir, dataDir: dir, fast: o.Fast, settings: maps.Clone(o.Settings), stdout: o.Stdout, as: as}, nil
}

// start prepares the data directory (initdb on first use, owner-only access on every
// start) and then starts the server on port, or attaches to the one already running.
func (s *Server) start(ctx context.Context, port int) error {
	if err := s.prepareDir(); err != nil {
		return err
	}
	needPassword, err := s.ensureCluster(ctx)
	if err != nil {
		return err
	}
	if err := s.ensureInclude(); err != nil {
		return err
	}
	hbaChanged, err := s.writeHBA()
	if err != nil {
		return err
	}
	running, err := s.isRunning(ctx)
	if err != nil {
		return err
	}
	if needPassword {
		if err := s.setSuperuserPassword(ctx, running); err != nil {
			return err
		}
	}
	if running {
		// A server started under older rules (trust) must drop them now, not at its
		// next restart.
		if hbaChanged {
			if _, err := s.run(ctx, "pg_ctl", "reload", "-D", s.dataDir); err != nil {
				return fmt.Errorf("reload %s: %w", hbaFile, err)
			}
		}
		return s.attach(ctx, port)
	}
	if port != 0 {
		return s.startOn(ctx, port)
	}
	return s.startOnFreePort(ctx)
}

// ensureCluster runs initdb on an empty data directory and reads the superuser's
// password otherwise; needPassword says the cluster has none yet (one made before
// passwords, with initdb -A trust, or whose file was removed).
func (s *Server) ensureCluster(ctx context.Context) (needPassword bool, err error) {
	_, err = os.Stat(filepath.Join(s.dataDir, "PG_VERSION"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, s.initdb(ctx)
	case err != nil:
		return false, err
	}
	s.superPW, err = readSecret(s.secretPath(Superuser))
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	return false, err
}

// startOnFreePort starts the server on a port it picks. Another process (often a
// parallel test binary) can take a free port between our probe and the postmaster's
// bind, so an auto-picked port gets a few tries.
func (s *Server) startOnFreePort(ctx context.Context) error {
	var lastErr error
	for attempt := 0; attempt < portAttempts; attempt++ {
		port, err := s.pickPort(attempt == 0)
		if err != nil {
			return err
		}
		lastErr = s.startOn(ctx, port)
		if lastErr == nil || !errors.Is(lastErr, errPortInUse) {
			return lastErr
		}
	}
	return lastErr
}

// URL is a connection string for database dbname as the superuser, password included.
// Use it to administer the cluster; give applications OwnerURL.
func (s *Server) URL(dbname string) string {
	return s.urlFor(url.UserPassword(Superuser, s.superPW), dbname)
}

func (s *Server) urlFor(user *url.Userinfo, dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     user,
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port is the TCP port the cluster listens on; it stays the same across Restart.
func (s *Server) Port() int { return s.port }

// DataDir is the absolute path of the cluster's data directory.
func (s *Server) DataDir() string { return s.dataDir }

// Attached reports whether Start found the server already running and did not start it.
// Stop still stops such a server; a caller that merely borrowed it may prefer not to.
func (s *Server) Attached() bool { return s.attached }

// LogPath is the server's log file; its tail is included in start errors.
func (s *Server) LogPath() string { return filepath.Join(s.dataDir, logFile) }

// Stop shuts the server down cleanly (pg_ctl stop -m fast). Stopping a server that is not
// running is not an error, so cleanups can call it unconditionally.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stop(ctx, "fast"); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	return nil
}

// Kill shuts the server down without a checkpoint (pg_ctl stop -m immediate), so the next
// start goes through crash recovery, as after a crash of PostgreSQL alone (the OS keeps
// its page cache, so fsync=off loses nothing, but synchronous_commit=off does: see
// Options.Settings).
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.stop(ctx, "immediate"); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	return nil
}

// Restart stops the server (if it runs) and starts it again on the same port and data
// directory. Clients see their connections drop and must reconnect.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stop(ctx, "fast"); err != nil {
		return fmt.Errorf("pglocal: restart: %w", err)
	}
	if err := s.startOn(ctx, s.port); err != nil {
		return fmt.Errorf("pglocal: restart: %w", err)
	}
	return nil
}

// CreateDatabase creates database name, copied from template when template is not empty.
// PostgreSQL refuses to copy a template that has other connections open. The error wraps
// ErrDatabaseExists when the database is already there.
func (s *Server) CreateDatabase(ctx context.Context, name, template string) error {
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return fmt.Errorf("pglocal: create database %s: connect: %w", name, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		sql += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := conn.Exec(ctx, sql); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
			return fmt.Errorf("pglocal: create database %s: %w", name, ErrDatabaseExists)
		}
		return fmt.Errorf("pglocal: create database %s: %w", name, err)
	}
	return nil
}

// ErrDatabaseExists is wrapped by CreateDatabase when the database already exists.
var ErrDatabaseExists = errors.New("database already exists")

// prepareDir creates the data directory and hands it to the server user. Its parents
// are created world-searchable so the server user can reach it.
//
// Run as root, the relay must not be steered by other users: a data directory that is a
// symlink, or that someone else owns, is refused (a planted cluster would be started as
// the server user; a planted symlink would have us chmod and chown its target). Checking
// the directory alone is not enough, since whoever can write its parent can swap it
// between our check and our use, so every ancestor must be writable only by root or us
// (or be sticky, like /tmp, where others cannot move what is ours). The directory is then
// opened without following symlinks and changed through that descriptor.
func (s *Server) prepareDir() error {
	parent := filepath.Dir(s.dataDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("create parent of data dir: %w", err)
	}
	if err := checkAncestors(parent); err != nil {
		return err
	}
	if err := os.Mkdir(s.dataDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create data dir: %w", err)
	}
	if fi, err := os.Lstat(s.dataDir); err != nil {
		return fmt.Errorf("stat data dir: %w", err)
	} else if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("data dir %s is a symbolic link: refusing to follow it (give the directory itself)", s.dataDir)
	} else if !fi.IsDir() {
		return fmt.Errorf("data dir %s is not a directory", s.dataDir)
	}
	dir, err := os.OpenFile(s.dataDir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open data dir: %w", err)
	}
	defer func() { _ = dir.Close() }()
	fi, err := dir.Stat()
	if err != nil {
		return fmt.Errorf("stat data dir: %w", err)
	}
	if uid, ok := ownerUID(fi); ok && uid != os.Geteuid() && (s.as.cred == nil || uid != int(s.as.cred.Uid)) {
		return fmt.Errorf("data dir %s is owned by uid %d, neither us (uid %d) nor the server user: refusing to use it "+
			"(remove it, or choose another RELAY_DATA_DIR)", s.dataDir, uid, os.Geteuid())
	}
	if err := s.as.checkTraverse(s.dataDir); err != nil {
		return err
	}
	if err := s.as.chownTree(s.dataDir, isOwnSecret); err != nil {
		return err
	}
	// 0700, not the 0750 PostgreSQL would accept: the directory holds the Unix socket,
	// which only the owner may reach.
	if p := fi.Mode().Perm(); p != 0o700 {
		if err := dir.Chmod(0o700); err != nil {
			return fmt.Errorf("chmod data dir: %w", err)
		}
	}
	return nil
}

func ownerUID(fi os.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// checkAncestors fails when a directory on the way to dir, as written or with symlinks
// resolved, belongs to another user than root or us, or is writable by others without
// being sticky; group write is accepted for group root and our own group.
func checkAncestors(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", dir, err)
	}
	for _, start := range []string{dir, real} {
		for p := start; ; p = filepath.Dir(p) {
			fi, err := os.Lstat(p)
			if err != nil {
				return fmt.Errorf("stat %s: %w", p, err)
			}
			if fi.IsDir() {
				if err := checkAncestor(p, fi); err != nil {
					return err
				}
			}
			if p == filepath.Dir(p) {
				break
			}
		}
	}
	return nil
}

func checkAncestor(p string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	mode := fi.Mode()
	if int(st.Uid) != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s, on the way to the data dir, is owned by uid %d: that user could swap the data dir; "+
			"choose a RELAY_DATA_DIR whose parents only root or you (uid %d) own", p, st.Uid, os.Geteuid())
	}
	if mode&os.ModeSticky != 0 {
		return nil
	}
	groupOK := st.Gid == 0 || int(st.Gid) == os.Getegid()
	if mode.Perm()&0o002 != 0 || (mode.Perm()&0o020 != 0 && !groupOK) {
		return fmt.Errorf("%s, on the way to the data dir, is writable by other users (mode %v) and not sticky: "+
			"they could swap the data dir; choose a RELAY_DATA_DIR whose parents only root or you can write", p, mode.Perm())
	}
	return nil
}

func (s *Server) initdb(ctx context.Context) error {
	entries, err := os.ReadDir(s.dataDir)
	if err != nil {
		return fmt.Errorf("read data dir: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("data dir %s is not empty but has no PG_VERSION, so it is not a PostgreSQL cluster: "+
			"refusing to initdb over it (empty or remove it)", s.dataDir)
	}
	pw := newPassword()
	// initdb reads the password from a file, which must not be in the (still empty) data
	// directory and must be readable by the server user alone.
	tmp, err := os.MkdirTemp(filepath.Dir(s.dataDir), ".pglocal-initdb-")
	if err != nil {
		return fmt.Errorf("create initdb password directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	if err := s.as.chownFile(tmp); err != nil {
		return err
	}
	pwFile := filepath.Join(tmp, "pwfile")
	if err := writeFileAtomic(pwFile, []byte(pw+"\n"), 0o600, s.as.chownTo()); err != nil {
		return err
	}
	args := []string{"-D", s.dataDir, "-U", Superuser, "--pwfile=" + pwFile,
		"--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"}
	if s.fast {
		args = append(args, "--no-sync")
	}
	if _, err := s.run(ctx, "initdb", args...); err != nil {
		return err
	}
	// Ours alone, not the server user's: it needs no password.
	if err := writeFileAtomic(s.secretPath(Superuser), []byte(pw+"\n"), 0o600, nil); err != nil {
		return err
	}
	s.superPW = pw
	return nil
}

// ensureInclude makes postgresql.conf read relay.conf. Checking on every start (rather
// than only after initdb) heals a cluster whose first start was interrupted.
func (s *Server) ensureInclude() error {
	path := filepath.Join(s.dataDir, "postgresql.conf")
	b, err := readNoFollow(path)
	if err != nil {
		return fmt.Errorf("read postgresql.conf: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == includeLine {
			return nil
		}
	}
	// O_NOFOLLOW: as root we write into a directory the server user owns, who could have
	// put a symlink here.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n# relay: settings that may change per start live in %s\n%s\n", confFile, includeLine)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append to postgresql.conf: %w", err)
	}
	return nil
}

// writeConf writes relay.conf for a start on port. It is rewritten every time so that a
// data dir first used by tests (Fast) gets durable settings back when started without it.
func (s *Server) writeConf(port int) error {
	onOff := "on"
	if s.fast {
		onOff = "off"
	}
	// The socket is only a convenience for psql -h DataDir; when the path would be too long
	// for sun_path the server would refuse to start, so go without it.
	sockDir := s.dataDir
	if len(sockDir)+len("/.s.PGSQL.")+len(strconv.Itoa(port)) > maxSocketLen {
		sockDir = ""
	}
	conf := fmt.Sprintf(`# Written by relay's pglocal on every start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = %s
max_connections = 200
fsync = %s
synchronous_commit = %s
full_page_writes = %s
`, port, quoteConf(sockDir), onOff, onOff, onOff)
	for _, k := range slices.Sorted(maps.Keys(s.settings)) {
		conf += k + " = " + quoteConf(s.settings[k]) + "\n"
	}
	return writeFileAtomic(filepath.Join(s.dataDir, confFile), []byte(conf), 0o600, s.as.chownTo())
}

// validSettingName keeps Settings keys from smuggling extra lines into relay.conf; values
// are quoted, and newlines in them rejected, for the same reason.
func validSettingName(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func quoteConf(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

// errPortInUse marks a start that failed only because the port was taken.
var errPortInUse = errors.New("port already in use")

// startOn starts the stopped server on port and waits until it accepts connections.
func (s *Server) startOn(ctx context.Context, port int) error {
	if err := s.writeConf(port); err != nil {
		return err
	}
	logPath := s.LogPath()
	var logStart int64
	if fi, err := os.Stat(logPath); err == nil {
		logStart = fi.Size()
	}
	_, err := s.run(ctx, "pg_ctl", "start", "-w", "-t", strconv.Itoa(int(startTimeout/time.Second)),
		"-D", s.dataDir, "-l", logPath)
	if err != nil {
		log := readFrom(logPath, logStart)
		if strings.Contains(log, "could not bind") || strings.Contains(log, "already in use") {
			err = fmt.Errorf("%w: 127.0.0.1:%d: %w", errPortInUse, port, err)
		}
		return fmt.Errorf("start server on port %d: %w%s", port, err, logTail(log))
	}
	s.port = port
	if err := s.writePortFile(); err != nil {
		return err
	}
	if err := s.waitReady(ctx); err != nil {
		// Do not leave behind a server nobody can use or will stop.
		stopCtx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		_ = s.stop(stopCtx, "immediate")
		return fmt.Errorf("server started on port %d but %w%s", port, err, logTail(readFrom(logPath, logStart)))
	}
	return nil
}

// attach adopts a server that is already running on the data dir, e.g. one left behind
// by a crashed relay, or one shared by two relays in the same directory.
func (s *Server) attach(ctx context.Context, wantPort int) error {
	port, err := s.pidFilePort()
	if err != nil {
		return fmt.Errorf("a server is already running on %s but its port is unknown: %w", s.dataDir, err)
	}
	if wantPort != 0 && wantPort != port {
		return fmt.Errorf("a server is already running on %s, on port %d rather than the requested %d: stop it first",
			s.dataDir, port, wantPort)
	}
	s.port = port
	s.attached = true
	if err := s.waitReady(ctx); err != nil {
		return fmt.Errorf("a server is already running on %s (port %d) but %w%s", s.dataDir, port, err,
			logTail(readTail(s.LogPath())))
	}
	return nil
}

// pidFilePort reads the port from postmaster.pid, whose fourth line it is.
func (s *Server) pidFilePort() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.dataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("read postmaster.pid: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, errors.New("postmaster.pid has no port line")
	}
	port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
	if err != nil {
		return 0, fmt.Errorf("postmaster.pid port %q: %w", lines[3], err)
	}
	return port, nil
}

// pickPort prefers the port this data dir used last, so URLs that users copied from an
// earlier run keep working, and otherwise asks the kernel for a free one.
func (s *Server) pickPort(preferRemembered bool) (int, error) {
	if preferRemembered {
		if b, err := os.ReadFile(filepath.Join(s.dataDir, portFile)); err == nil {
			if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p > 0 && p < 65536 && portFree(p) {
				return p, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

func (s *Server) writePortFile() error {
	return writeFileAtomic(filepath.Join(s.dataDir, portFile), []byte(strconv.Itoa(s.port)+"\n"), 0o600, s.as.chownTo())
}

// waitReady pings until the server accepts connections. pg_ctl -w alone is not enough:
// it reports readiness from postmaster.pid, which can precede the TCP listener being
// usable for our URL (e.g. if someone else started the server with other settings).
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var lastErr error
	for {
		attemptCtx, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attemptCtx, s.URL("postgres"))
		if err == nil {
			err = conn.Ping(attemptCtx)
			_ = conn.Close(context.Background())
		}
		cancelAttempt()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("it did not accept connections: %w", lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// isRunning asks pg_ctl status, which knows how to tell a live postmaster.pid from a stale
// one left by a crash.
func (s *Server) isRunning(ctx context.Context) (bool, error) {
	cmd := s.command(ctx, "pg_ctl", "status", "-D", s.dataDir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil {
		return true, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 3 { // 3: no server running
		return false, nil
	}
	return false, fmt.Errorf("pg_ctl status: %w: %s", err, strings.TrimSpace(out.String()))
}

func (s *Server) stop(ctx context.Context, mode string) error {
	running, err := s.isRunning(ctx)
	if err != nil {
		return err
	}
	if !running {
		return nil
	}
	_, err = s.run(ctx, "pg_ctl", "stop", "-w", "-t", strconv.Itoa(int(startTimeout/time.Second)),
		"-m", mode, "-D", s.dataDir)
	if err != nil {
		return fmt.Errorf("stop server (%s): %w", mode, err)
	}
	return nil
}

// command prepares one of the PostgreSQL programs to run as the server user, in an
// environment stripped of PG* variables so the caller's PGDATA, PGPORT etc. cannot
// redirect it.
func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, name), args...)
	// The inherited working directory (say /root/project) may be unreadable to the server
	// user, and initdb/pg_ctl fail when they cannot resolve it.
	cmd.Dir = s.dataDir
	cmd.SysProcAttr = s.as.attr()
	env := []string{"LC_ALL=C"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = env
	// pg_ctl hands the postmaster our output pipe only if its redirection fails; this
	// bounds how long Wait could then block on it.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run executes a program and, on failure, returns its output in the error and copies it
// to Options.Stdout.
func (s *Server) run(ctx context.Context, name string, args ...string) (string, error) {
	return s.runInput(ctx, "", name, args...)
}

// runInput is run with stdin, for what must not appear in a process list.
func (s *Server) runInput(ctx context.Context, stdin, name string, args ...string) (string, error) {
	cmd := s.command(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		if s.stdout != nil {
			fmt.Fprintf(s.stdout, "pglocal: %s %s failed: %v\n%s", name, strings.Join(args, " "), err, out.String())
		}
		msg := strings.TrimSpace(out.String())
		if s.as.cred != nil {
			msg = fmt.Sprintf("(run as user %s) %s", s.as.name, msg)
		}
		return out.String(), fmt.Errorf("%s: %w: %s", name, err, tail(msg, 2000))
	}
	return out.String(), nil
}

// readFrom returns the log written since offset (capped), so errors show this start's
// messages rather than those of earlier runs.
func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return string(b)
}

func readTail(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return readFrom(path, max(0, fi.Size()-4096))
}

func logTail(log string) string {
	log = strings.TrimSpace(log)
	if log == "" {
		return ""
	}
	return "\nserver.log (tail):\n" + tail(log, 3000)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
		s = s[i+1:]
	}
	return "..." + s
}
