package pglocal

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// ServerUser is the system account the server runs as when the caller is root, because
// initdb and postgres refuse to run as root. FallbackUser is used where it does not exist.
const (
	ServerUser   = "postgres"
	FallbackUser = "nobody"
)

// runAs is the identity the PostgreSQL programs run under. A nil cred means "as we are".
type runAs struct {
	name string
	cred *syscall.Credential
}

func (r runAs) attr() *syscall.SysProcAttr {
	if r.cred == nil {
		return nil
	}
	// A fresh Credential per command: exec must not share one mutable value between
	// concurrent Starts.
	c := *r.cred
	c.Groups = append([]uint32(nil), r.cred.Groups...)
	return &syscall.SysProcAttr{Credential: &c}
}

// serverIdentity decides who runs initdb/pg_ctl: ourselves unless we are root.
func serverIdentity() (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{}, nil
	}
	u, err := user.Lookup(ServerUser)
	if err != nil {
		u, err = user.Lookup(FallbackUser)
		if err != nil {
			return runAs{}, fmt.Errorf("running as root, and neither user %q nor %q exists to run PostgreSQL: %w",
				ServerUser, FallbackUser, err)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return runAs{}, fmt.Errorf("user %s: parse uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return runAs{}, fmt.Errorf("user %s: parse gid %q: %w", u.Username, u.Gid, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	// Supplementary groups matter for traversing group-readable parents; without them
	// Go's exec would drop to an empty group list.
	if ids, err := u.GroupIds(); err == nil {
		for _, s := range ids {
			if g, err := strconv.ParseUint(s, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(g))
			}
		}
	}
	return runAs{name: u.Username, cred: cred}, nil
}

// checkTraverse fails when the server user could not reach dir because a parent directory
// lacks search permission for it (the classic case: a data dir under /root). Without this
// check initdb fails later with a far less obvious message.
func (r runAs) checkTraverse(dir string) error {
	if r.cred == nil {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if !r.canSearch(fi) {
			return fmt.Errorf("PostgreSQL runs as user %q (the relay runs as root), which cannot traverse %s (mode %v): "+
				"put the data directory where that user can reach it, e.g. RELAY_DATA_DIR=/var/lib/relay or /tmp/relay",
				r.name, p, fi.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func (r runAs) canSearch(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true // cannot tell; let PostgreSQL report it
	}
	perm := fi.Mode().Perm()
	if st.Uid == r.cred.Uid {
		return perm&0o100 != 0
	}
	if st.Gid == r.cred.Gid {
		return perm&0o010 != 0
	}
	for _, g := range r.cred.Groups {
		if st.Gid == g {
			return perm&0o010 != 0
		}
	}
	return perm&0o001 != 0
}

// chownTree hands dir to the server user, except the entries directly in dir that keep
// says stay ours. It walks the tree only when the top directory has the wrong owner, so
// restarting a large existing cluster stays cheap.
func (r runAs) chownTree(dir string, keep func(name string) bool) error {
	if r.cred == nil {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == r.cred.Uid && st.Gid == r.cred.Gid {
		return nil
	}
	err = filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if filepath.Dir(p) == dir && keep(filepath.Base(p)) {
			return nil
		}
		return os.Lchown(p, int(r.cred.Uid), int(r.cred.Gid))
	})
	if err != nil {
		return fmt.Errorf("chown %s to %s: %w", dir, r.name, err)
	}
	return nil
}

// owner is a uid:gid to hand a file to.
type owner struct{ uid, gid int }

// chownTo is who files the server must read are handed to, or nil when the server runs
// as we do.
func (r runAs) chownTo() *owner {
	if r.cred == nil {
		return nil
	}
	return &owner{int(r.cred.Uid), int(r.cred.Gid)}
}

// chownFile gives a file we (root) wrote inside the data dir to the server user.
func (r runAs) chownFile(path string) error {
	if r.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(r.cred.Uid), int(r.cred.Gid)); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, r.name, err)
	}
	return nil
}
