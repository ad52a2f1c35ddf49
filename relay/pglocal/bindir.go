package pglocal

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// serverBinaries are the programs Start needs; a candidate directory counts only if it has
// all of them, because Debian's pg_config (from libpq-dev) can point at a bin dir that
// holds client tools but no server.
var serverBinaries = []string{"initdb", "pg_ctl", "postgres"}

// FindBinDir locates the PostgreSQL server binaries: $PG_BINDIR if set, else the directory
// of `initdb` on PATH (symlinks resolved), else `pg_config --bindir`, else the newest
// /usr/lib/postgresql/*/bin.
func FindBinDir() (string, error) {
	if dir := os.Getenv("PG_BINDIR"); dir != "" {
		if err := hasServerBinaries(dir); err != nil {
			return "", fmt.Errorf("PG_BINDIR=%s: %w", dir, err)
		}
		return dir, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if dir := filepath.Dir(real); hasServerBinaries(dir) == nil {
				return dir, nil
			}
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" && hasServerBinaries(dir) == nil {
			return dir, nil
		}
	}
	for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"} {
		if dir := newestVersionDir(pattern); dir != "" {
			return dir, nil
		}
	}
	if hasServerBinaries("/usr/local/pgsql/bin") == nil {
		return "/usr/local/pgsql/bin", nil
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: " +
		"install postgresql (e.g. `apt-get install postgresql`) or set PG_BINDIR")
}

// newestVersionDir returns the matching directory with the highest numeric version that
// holds the server binaries; a plain string sort would put 9.6 after 15.
func newestVersionDir(pattern string) string {
	matches, _ := filepath.Glob(pattern)
	type cand struct {
		dir string
		ver []int
	}
	var cands []cand
	for _, m := range matches {
		if hasServerBinaries(m) != nil {
			continue
		}
		cands = append(cands, cand{m, parseVersion(filepath.Base(filepath.Dir(m)))})
	}
	if len(cands) == 0 {
		return ""
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i].ver, cands[j].ver
		for k := 0; k < len(a) && k < len(b); k++ {
			if a[k] != b[k] {
				return a[k] > b[k]
			}
		}
		return len(a) > len(b)
	})
	return cands[0].dir
}

// parseVersion extracts the numbers from names like "15" or "pgsql-16".
func parseVersion(name string) []int {
	name = strings.TrimPrefix(name, "pgsql-")
	var v []int
	for _, part := range strings.Split(name, ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			break
		}
		v = append(v, n)
	}
	return v
}

func hasServerBinaries(dir string) error {
	for _, name := range serverBinaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("no %s in %s", name, dir)
		}
		if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s in %s is not executable", name, dir)
		}
	}
	return nil
}
