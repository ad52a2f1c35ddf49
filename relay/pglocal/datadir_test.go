package pglocal_test

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/pglocal"
)

// nobodyIDs is the uid and gid of the OS user nobody, the "other user" of these tests.
func nobodyIDs(t *testing.T) (int, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make files owned by another user")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// startOrStop is Start for a test that expects a refusal: a server it starts anyway is
// stopped again, so that a failing test leaves nothing running.
func startOrStop(t *testing.T, dataDir string) (*pglocal.Server, error) {
	t.Helper()
	srv, err := pglocal.Start(context.Background(), pglocal.Options{DataDir: dataDir, Fast: true})
	if err == nil {
		_ = srv.Stop(context.Background())
	}
	return srv, err
}

func modeOf(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// TestStartRefusesASymlinkedDataDir: another user plants the data directory as a
// symlink to a directory of theirs (or to anything root owns). Start refuses it and
// neither chmods nor chowns the target.
func TestStartRefusesASymlinkedDataDir(t *testing.T) {
	t.Parallel()
	uid, gid := nobodyIDs(t)
	base := tempDir(t)
	target := filepath.Join(base, "target")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(target, uid, gid); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(base, "data")
	if err := os.Symlink(target, dataDir); err != nil {
		t.Fatal(err)
	}
	_, err := startOrStop(t, dataDir)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("Start on a symlinked data dir: err = %v, want a refusal naming the symbolic link", err)
	}
	if m := modeOf(t, target); m.Perm() != 0o755 {
		t.Errorf("the symlink's target was changed to mode %v", m.Perm())
	}
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("something was written into the symlink's target: %v", entries)
	}
}

// TestStartRefusesADataDirOfAnotherUser: a directory another user made where the data
// directory should be (a relative ./.relay in a shared directory, say) is refused, not
// adopted and handed to the server user.
func TestStartRefusesADataDirOfAnotherUser(t *testing.T) {
	t.Parallel()
	uid, gid := nobodyIDs(t)
	dataDir := filepath.Join(tempDir(t), "data")
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dataDir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dataDir, uid, gid); err != nil {
		t.Fatal(err)
	}
	_, err := startOrStop(t, dataDir)
	if err == nil || !strings.Contains(err.Error(), "owned by uid "+strconv.Itoa(uid)) {
		t.Fatalf("Start on another user's directory: err = %v, want a refusal naming its owner", err)
	}
	if m := modeOf(t, dataDir); m.Perm() != 0o777 {
		t.Errorf("another user's directory was changed to mode %v", m.Perm())
	}
}

// TestStartRefusesAParentOthersCanWrite: whoever can write the parent directory can swap
// the data directory between our check and our use, so such a parent is refused too,
// unless it is sticky (like /tmp), where others cannot move what is ours.
func TestStartRefusesAParentOthersCanWrite(t *testing.T) {
	t.Parallel()
	uid, gid := nobodyIDs(t)
	base := tempDir(t)
	for _, tc := range []struct {
		name     string
		mode     os.FileMode
		uid, gid int // owner
	}{
		{"world-writable", 0o777, 0, 0},
		{"group-writable", 0o775, 0, gid}, // group nogroup, which is not ours
		{"another user's", 0o755, uid, gid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := filepath.Join(base, strings.ReplaceAll(tc.name, "'", ""))
			if err := os.Mkdir(parent, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(parent, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(parent, tc.uid, tc.gid); err != nil {
				t.Fatal(err)
			}
			_, err := startOrStop(t, filepath.Join(parent, "data"))
			if err == nil || !strings.Contains(err.Error(), parent) {
				t.Fatalf("err = %v, want a refusal naming %s", err, parent)
			}
			t.Logf("refused: %v", err)
		})
	}
	// A sticky world-writable parent, like /tmp, is fine.
	sticky := filepath.Join(base, "sticky")
	if err := os.Mkdir(sticky, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: filepath.Join(sticky, "data"), Fast: true})
	if err != nil {
		t.Fatalf("Start under a sticky directory: %v", err)
	}
	_ = srv.Stop(ctx)
}

// TestSymlinksPlantedInTheDataDirAreNotFollowed: as root, the data directory belongs to
// the server user, who could replace a file the relay rewrites with a symlink to a file
// of root's. The rewrite replaces the symlink; the target is untouched.
func TestSymlinksPlantedInTheDataDirAreNotFollowed(t *testing.T) {
	// Not parallel: it stops and restarts its cluster.
	if os.Geteuid() != 0 {
		t.Skip("only root writes into a directory of another user")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := tempDir(t)
	dataDir := filepath.Join(base, "data")
	srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: dataDir, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(base, "root-only")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"relay.conf", "relay.port", "pg_hba.conf"} {
		path := filepath.Join(dataDir, name)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(victim, path); err != nil {
			t.Fatal(err)
		}
	}
	srv, err = pglocal.Start(ctx, pglocal.Options{DataDir: dataDir, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Stop(context.Background()) }()
	if b, err := os.ReadFile(victim); err != nil || string(b) != "precious\n" {
		t.Errorf("the symlinks' target now holds %q (%v)", b, err)
	}
	if fi, err := os.Stat(victim); err != nil || fi.Sys() == nil || modeOf(t, victim).Perm() != 0o600 {
		t.Errorf("the target's mode changed: %v", err)
	}
	for _, name := range []string{"relay.conf", "relay.port", "pg_hba.conf"} {
		if m := modeOf(t, filepath.Join(dataDir, name)); !m.IsRegular() {
			t.Errorf("%s is %v after the start, want a regular file", name, m)
		}
	}
}

// TestRootKeepsItsPasswordFilesWhenTheDirIsHandedOver: a data directory found with the
// wrong owner is handed to the server user again, all but the password files.
func TestRootKeepsItsPasswordFilesWhenTheDirIsHandedOver(t *testing.T) {
	// Not parallel: it stops and restarts its cluster.
	if os.Geteuid() != 0 {
		t.Skip("only root hands the data directory to another user")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dataDir := filepath.Join(tempDir(t), "data")
	srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: dataDir, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.OwnerURL(ctx, "relay", "relay"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dataDir, 0, 0); err != nil { // say, restored from a backup as root
		t.Fatal(err)
	}
	srv, err = pglocal.Start(ctx, pglocal.Options{DataDir: dataDir, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Stop(context.Background()) }()
	if _, err := srv.OwnerURL(ctx, "relay", "relay"); err != nil {
		t.Fatalf("OwnerURL after the data dir was handed over again: %v", err)
	}
	for _, name := range []string{"postgres.password", "relay.password", "database.url"} {
		fi, err := os.Stat(filepath.Join(dataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s is uid %d mode %v, want root's, 0600", name, st.Uid, fi.Mode().Perm())
		}
	}
}
