package pglocal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// hbaConf is the whole of pg_hba.conf, rewritten on every start so that a cluster made
// with older rules (initdb -A trust) loses them: the socket, in the 0700 data directory,
// lets the server's OS user in as the role of the same name; TCP on 127.0.0.1 needs a
// password (scram-sha-256) for every role. Nothing else is accepted.
const hbaConf = `# Written by relay's pglocal on every start; edits are overwritten.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 peer
host    all       all   127.0.0.1/32  scram-sha-256
`

// secretPath is the file holding role's password.
func (s *Server) secretPath(role string) string {
	return filepath.Join(s.dataDir, role+".password")
}

// isOwnSecret tells the data directory's files that stay the starting process's own
// (root's, when the server runs as another user): the passwords and database.url.
func isOwnSecret(name string) bool {
	return strings.HasSuffix(name, ".password") || name == URLFile
}

// newPassword is 256 random bits in hex: nothing in it needs quoting anywhere.
func newPassword() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// readSecret reads a password file that must be a regular file of ours, readable by us
// alone. A symlink (which the server user, owning the data directory, could plant to
// make root read another file) or a file someone else made is refused.
func readSecret(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return "", fmt.Errorf("%s is a symbolic link: remove it", path)
		}
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || !ok || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s must be a regular file owned by uid %d with mode 0600 (it is %v, uid %d): remove it to have a new password set",
			path, os.Geteuid(), fi.Mode(), st.Uid)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" {
		return "", fmt.Errorf("%s is empty: remove it to have a new password set", path)
	}
	return pw, nil
}

// readNoFollow reads a file of the data directory without following a symlink.
func readNoFollow(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return io.ReadAll(io.LimitReader(f, 16<<20))
}

// writeFileAtomic replaces path with data: a new file (O_EXCL, so never someone's
// symlink) renamed over the old one, which replaces a symlink rather than following it.
// As root we write into a directory the server user owns; this keeps that user from
// steering our writes elsewhere. to, when not nil, is given the file.
func writeFileAtomic(path string, data []byte, perm os.FileMode, to *owner) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil && to != nil {
		err = f.Chown(to.uid, to.gid)
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeHBA writes pg_hba.conf and reports whether it changed.
func (s *Server) writeHBA() (bool, error) {
	path := filepath.Join(s.dataDir, hbaFile)
	if old, err := readNoFollow(path); err == nil && string(old) == hbaConf {
		return false, nil
	}
	if err := writeFileAtomic(path, []byte(hbaConf), 0o600, s.as.chownTo()); err != nil {
		return false, err
	}
	return true, nil
}

// setSuperuserPassword gives the superuser of an existing cluster a new password and
// records it: the upgrade of a cluster made with initdb -A trust. A stopped server is
// changed in single-user mode, so nothing listens meanwhile; a running one still has its
// old rules loaded, which let us in without a password only if they were trust.
func (s *Server) setSuperuserPassword(ctx context.Context, running bool) error {
	pw := newPassword()
	stmt := "ALTER ROLE " + pgx.Identifier{Superuser}.Sanitize() + " WITH PASSWORD '" + pw + "'"
	if running {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.urlForRunning())
		if err != nil {
			return fmt.Errorf("%s has no %s and its running server does not let us in to set one (%v): "+
				"stop it (pg_ctl stop -D %s) and start again", s.dataDir, filepath.Base(s.secretPath(Superuser)), err, s.dataDir)
		}
		defer func() { _ = conn.Close(context.Background()) }()
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("set the superuser's password: %w", err)
		}
	} else {
		// One statement per line on stdin; the password never shows in a process list.
		out, err := s.runInput(ctx, stmt+"\n", "postgres", "--single", "-D", s.dataDir,
			"-c", "exit_on_error=on", "-c", "log_min_messages=warning", "postgres")
		if err == nil && strings.Contains(out, "ERROR") {
			err = errors.New(strings.TrimSpace(out))
		}
		if err != nil {
			return fmt.Errorf("set the superuser's password in single-user mode: %s", strings.ReplaceAll(err.Error(), pw, "xxxxx"))
		}
	}
	if err := writeFileAtomic(s.secretPath(Superuser), []byte(pw+"\n"), 0o600, nil); err != nil {
		return err
	}
	s.superPW = pw
	return nil
}

// urlForRunning is the passwordless superuser URL of a running server found on the data
// directory, at the port its postmaster.pid names.
func (s *Server) urlForRunning() string {
	port, err := s.pidFilePort()
	if err != nil {
		port = 0
	}
	u := url.URL{Scheme: "postgres", User: url.User(Superuser), Host: fmt.Sprintf("127.0.0.1:%d", port),
		Path: "/postgres", RawQuery: "sslmode=disable"}
	return u.String()
}

// OwnerURL makes sure role exists as an ordinary login role (no superuser, no CREATEDB,
// no CREATEROLE) that owns database dbname and everything in it, and returns its URL,
// password included. The password is made once and kept in <role>.password (0600, ours
// alone); the URL is also written to database.url so that people can
// `psql "$(cat database.url)"`. Objects a superuser created in dbname (a database made
// by an older relay that connected as the superuser) are handed to role. Processes that
// call it at once on one cluster (relays and CLI commands starting together) take turns.
func (s *Server) OwnerURL(ctx context.Context, role, dbname string) (string, error) {
	if role == "" || role == Superuser || dbname == "" {
		return "", fmt.Errorf("pglocal: OwnerURL(%q, %q): need a role other than the superuser and a database", role, dbname)
	}
	admin, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("pglocal: connect as superuser: %w", err)
	}
	defer func() { _ = admin.Close(context.Background()) }()
	// Held until admin closes: the password file, the role and the database are read
	// and made by one caller at a time.
	if _, err := admin.Exec(ctx, `SELECT pg_advisory_lock($1)`, ownerLockID); err != nil {
		return "", fmt.Errorf("pglocal: take the owner setup lock: %w", err)
	}
	pw, err := readSecret(s.secretPath(role))
	fresh := errors.Is(err, os.ErrNotExist)
	if err != nil && !fresh {
		return "", fmt.Errorf("pglocal: %w", err)
	}
	if fresh {
		pw = newPassword()
	}
	if err := ensureRole(ctx, admin, role, pw, fresh); err != nil {
		return "", fmt.Errorf("pglocal: role %s: %w", role, err)
	}
	if fresh {
		if err := writeFileAtomic(s.secretPath(role), []byte(pw+"\n"), 0o600, nil); err != nil {
			return "", fmt.Errorf("pglocal: %w", err)
		}
	}
	if err := s.ensureOwnedDatabase(ctx, admin, role, dbname); err != nil {
		return "", fmt.Errorf("pglocal: database %s: %w", dbname, err)
	}
	u := s.urlFor(url.UserPassword(role, pw), dbname)
	if err := writeFileAtomic(filepath.Join(s.dataDir, URLFile), []byte(u+"\n"), 0o600, nil); err != nil {
		return "", fmt.Errorf("pglocal: %w", err)
	}
	return u, nil
}

// ownerLockID is the advisory lock that serialises OwnerURL ("pgowner").
const ownerLockID int64 = 0x70676f776e6572

// roleAttrs are the attributes the owner role is held to on every call, so that a role
// someone widened is narrowed again.
const roleAttrs = " WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"

func ensureRole(ctx context.Context, conn *pgx.Conn, role, pw string, setPassword bool) error {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil {
		return err
	}
	stmt := "ALTER ROLE " + pgx.Identifier{role}.Sanitize() + roleAttrs
	if !exists {
		stmt = "CREATE ROLE " + pgx.Identifier{role}.Sanitize() + roleAttrs
	}
	if setPassword || !exists {
		// pw is our own hex, never input: it needs no escaping.
		stmt += " PASSWORD '" + pw + "'"
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return errors.New(strings.ReplaceAll(err.Error(), pw, "xxxxx"))
	}
	return nil
}

// handOverSQL lists the statements that give role what a superuser created in the
// current database: schemas, relations (sequences owned by a column move with their
// table), functions and types, outside the system schemas.
const handOverSQL = `
WITH r AS (SELECT oid FROM pg_roles WHERE rolname = $1),
     n AS (SELECT oid, nspname, nspowner FROM pg_namespace
            WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema')
SELECT format('ALTER SCHEMA %I OWNER TO %I', n.nspname, $1)
  FROM n WHERE n.nspname <> 'public' AND n.nspowner <> (SELECT oid FROM r)
UNION ALL
SELECT format('ALTER %s %s OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                             WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
              c.oid::regclass, $1)
  FROM pg_class c JOIN n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relowner <> (SELECT oid FROM r)
   AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d
             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT format('ALTER %s %s OWNER TO %I',
              CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
              p.oid::regprocedure, $1)
  FROM pg_proc p JOIN n ON n.oid = p.pronamespace
 WHERE p.proowner <> (SELECT oid FROM r)
UNION ALL
SELECT format('ALTER TYPE %s OWNER TO %I', t.oid::regtype, $1)
  FROM pg_type t JOIN n ON n.oid = t.typnamespace
 WHERE t.typowner <> (SELECT oid FROM r) AND t.typtype IN ('c', 'd', 'e', 'r')
   AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')`

func (s *Server) ensureOwnedDatabase(ctx context.Context, admin *pgx.Conn, role, dbname string) error {
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, dbname).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{dbname}.Sanitize()+" OWNER "+pgx.Identifier{role}.Sanitize()); err != nil {
			return err
		}
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{dbname}.Sanitize()+" OWNER TO "+pgx.Identifier{role}.Sanitize()); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, s.URL(dbname))
	if err != nil {
		return fmt.Errorf("connect as superuser: %w", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	rows, err := conn.Query(ctx, handOverSQL, role)
	if err != nil {
		return fmt.Errorf("list objects to hand over: %w", err)
	}
	stmts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list objects to hand over: %w", err)
	}
	if len(stmts) == 0 {
		return nil
	}
	// One transaction: a relay never sees a half-handed-over schema.
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, stmt := range stmts {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		return nil
	})
}
