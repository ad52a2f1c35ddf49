package cli

// No Docker engine runs where these tests do, so the Dockerfile and docker-compose.yml
// are checked by reading them: every reference must resolve (stages, files, services,
// the binary's path, its subcommands and flags, the variables the relay reads), and the
// relay's configuration in the compose file must pass the same validation `relay run`
// applies at startup.

import (
	"bufio"
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"

	"github.com/relayhq/relay/relay/internal/netguard"
)

const repoRoot = "../../.."

// compose models the part of the Compose specification this file uses. Decoding with
// KnownFields makes a misspelt key (helthcheck, depends-on) fail instead of being
// silently ignored by this test; a new legitimate key needs a field here.
type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string                `yaml:"image"`
	Build       *build                `yaml:"build"`
	Command     []string              `yaml:"command"`
	Environment map[string]string     `yaml:"environment"`
	Ports       []string              `yaml:"ports"`
	Expose      []string              `yaml:"expose"`
	Volumes     []string              `yaml:"volumes"`
	DependsOn   map[string]dependency `yaml:"depends_on"`
	Healthcheck *healthcheck          `yaml:"healthcheck"`
	Restart     string                `yaml:"restart"`
}

type build struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

type dependency struct {
	Condition string `yaml:"condition"`
}

type healthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// dockerfile is the parsed Dockerfile: its instructions per stage, continuation lines
// joined and comments dropped.
type dockerfile struct {
	args   map[string]string // global ARGs (before the first FROM) and their defaults
	stages []stage
}

type stage struct {
	name, image string
	instrs      []instr
}

type instr struct {
	op   string // upper case
	args string
}

func loadDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	df := dockerfile{args: map[string]string{}}
	var logical []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(line)
		logical = append(logical, cur.String())
		cur.Reset()
	}
	for _, l := range logical {
		op, args, _ := strings.Cut(l, " ")
		in := instr{op: strings.ToUpper(op), args: strings.TrimSpace(args)}
		switch {
		case in.op == "FROM":
			f := strings.Fields(in.args)
			st := stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			df.stages = append(df.stages, st)
		case len(df.stages) == 0:
			if in.op != "ARG" {
				t.Fatalf("Dockerfile: %s before the first FROM", in.op)
			}
			k, v, _ := strings.Cut(in.args, "=")
			df.args[k] = v
		default:
			s := &df.stages[len(df.stages)-1]
			s.instrs = append(s.instrs, in)
		}
	}
	return df
}

func (s stage) all(op string) []string {
	var out []string
	for _, in := range s.instrs {
		if in.op == op {
			out = append(out, in.args)
		}
	}
	return out
}

// execForm parses an exec-form (JSON array) instruction argument.
func execForm(t *testing.T, what, s string) []string {
	t.Helper()
	var out []string
	if err := yaml.Unmarshal([]byte(s), &out); err != nil || len(out) == 0 || !strings.HasPrefix(strings.TrimSpace(s), "[") {
		t.Fatalf("Dockerfile %s: want the exec form [\"...\"], got %q", what, s)
	}
	return out
}

// parseCLI parses args with the real command line, in an environment holding exactly
// env among the variables the relay knows (others unset for the duration of the test).
func parseCLI(t *testing.T, env map[string]string, args []string) (*CLI, error) {
	t.Helper()
	for _, name := range envNames(reflect.TypeOf(CLI{})) {
		t.Setenv(name, "") // restores the developer's value afterwards
		if err := os.Unsetenv(name); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	var cli CLI
	parser, err := newParser(&cli, kong.Exit(func(int) { t.Fatalf("kong wanted to exit parsing %q", args) }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = parser.Parse(args)
	return &cli, err
}

// envNames lists the env tags of a command struct and what it embeds, recursing into
// subcommands too when asked for the whole CLI.
func envNames(typ reflect.Type) []string {
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Type.Kind() == reflect.Struct && (f.Anonymous || f.Tag.Get("cmd") != "" || hasCmd(f.Tag)) {
			out = append(out, envNames(f.Type)...)
			continue
		}
		if env := f.Tag.Get("env"); env != "" {
			out = append(out, strings.Split(env, ",")...)
		}
	}
	return out
}

func hasCmd(tag reflect.StructTag) bool { _, ok := tag.Lookup("cmd"); return ok }

// relayReads is what `relay run` reads: the globals and run's own flags.
func relayReads() []string {
	return append(envNames(reflect.TypeOf(Globals{})), envNames(reflect.TypeOf(RunCmd{}))...)
}

func TestDockerCompose(t *testing.T) {
	c := loadCompose(t)
	for _, name := range []string{"postgres", "relay", "receiver"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("docker-compose.yml: no %q service", name)
		}
	}
	pg, rl, rc := c.Services["postgres"], c.Services["relay"], c.Services["receiver"]

	// PostgreSQL: 15, with a readiness probe the relay can wait on, and its data on a
	// declared volume.
	if !strings.HasPrefix(pg.Image, "postgres:15") {
		t.Errorf("postgres image %q, want postgres:15", pg.Image)
	}
	if pg.Healthcheck == nil || !strings.Contains(strings.Join(pg.Healthcheck.Test, " "), "pg_isready") {
		t.Errorf("postgres healthcheck must run pg_isready, got %+v", pg.Healthcheck)
	}
	for _, v := range pg.Volumes {
		if name, _, _ := strings.Cut(v, ":"); !strings.HasPrefix(name, ".") && !strings.HasPrefix(name, "/") {
			if _, ok := c.Volumes[name]; !ok {
				t.Errorf("postgres volume %q is not declared under volumes:", name)
			}
		}
	}

	// Both of our services build the image from this repository's Dockerfile.
	for name, s := range map[string]service{"relay": rl, "receiver": rc} {
		if s.Build == nil || s.Image != "" {
			t.Errorf("%s: want build: (this repository), got image %q build %+v", name, s.Image, s.Build)
			continue
		}
		df := s.Build.Dockerfile
		if df == "" {
			df = "Dockerfile"
		}
		if _, err := os.Stat(filepath.Join(repoRoot, s.Build.Context, df)); err != nil {
			t.Errorf("%s: build refers to a missing Dockerfile: %v", name, err)
		}
	}
	binary := imageBinary(t)

	// The relay: waits for a healthy PostgreSQL, uses it, and is itself probed on /readyz.
	if rl.DependsOn["postgres"].Condition != "service_healthy" {
		t.Errorf("relay depends_on postgres: condition %q, want service_healthy", rl.DependsOn["postgres"].Condition)
	}
	reads := relayReads()
	for k := range rl.Environment {
		if !slices.Contains(reads, k) {
			t.Errorf("relay environment sets %s, which relay run does not read (it reads %v)", k, reads)
		}
	}
	dbURL, err := url.Parse(rl.Environment["DATABASE_URL"])
	if err != nil {
		t.Fatalf("relay DATABASE_URL: %v", err)
	}
	pass, _ := dbURL.User.Password()
	if dbURL.Hostname() != "postgres" || dbURL.User.Username() != pg.Environment["POSTGRES_USER"] ||
		pass != pg.Environment["POSTGRES_PASSWORD"] || strings.TrimPrefix(dbURL.Path, "/") != pg.Environment["POSTGRES_DB"] {
		t.Errorf("relay DATABASE_URL %q does not match the postgres service (host postgres, its POSTGRES_USER/PASSWORD/DB)", dbURL.Redacted())
	}
	if p := dbURL.Port(); p != "" && p != "5432" {
		t.Errorf("relay DATABASE_URL port %s, PostgreSQL listens on 5432", p)
	}
	cli, err := parseCLI(t, rl.Environment, rl.Command)
	if err != nil {
		t.Fatalf("relay command %q: %v", rl.Command, err)
	}
	if len(rl.Command) == 0 || rl.Command[0] != "run" {
		t.Errorf("relay command %q, want run (which migrates, then delivers)", rl.Command)
	}
	// parseCLI has parsed every value (log level and format included); settings checks
	// their ranges, as `relay run` does first.
	if _, _, err := cli.Run.settings(); err != nil {
		t.Errorf("relay environment fails startup validation: %v", err)
	}
	_, relayPort, err := splitHostPort(cli.Run.Addr)
	if err != nil {
		t.Fatalf("relay RELAY_ADDR: %v", err)
	}
	if !slices.ContainsFunc(rl.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+relayPort) }) {
		t.Errorf("relay ports %v do not publish RELAY_ADDR's port %s", rl.Ports, relayPort)
	}
	checkHealthcheck(t, "relay", rl, binary, "/readyz", relayPort)

	// The receiver: verifies with a secret, on the port the relay may reach.
	if rc.Environment["RECEIVER_SECRET"] == "" {
		t.Errorf("receiver has no RECEIVER_SECRET: it would log deliveries unverified")
	}
	rcli, err := parseCLI(t, rc.Environment, rc.Command)
	if err != nil || len(rc.Command) == 0 || rc.Command[0] != "receive" {
		t.Fatalf("receiver command %q: want relay receive (%v)", rc.Command, err)
	}
	if rcli.Receive.Secret != rc.Environment["RECEIVER_SECRET"] {
		t.Errorf("RECEIVER_SECRET does not reach relay receive")
	}
	_, recvPort, err := splitHostPort(rcli.Receive.Addr)
	if err != nil {
		t.Fatalf("receiver --addr: %v", err)
	}
	// The receiver by name and on its port alone, not every port of the host.
	allowed, err := netguard.ParseAllowlist(rl.Environment["RELAY_ALLOWED_TARGETS"])
	if err != nil {
		t.Errorf("RELAY_ALLOWED_TARGETS: %v", err)
	} else if !slices.Equal(strings.Split(allowed.String(), ","), []string{"receiver:" + recvPort}) {
		t.Errorf("RELAY_ALLOWED_TARGETS %q, want exactly the receiver service by name and port (receiver:%s)",
			rl.Environment["RELAY_ALLOWED_TARGETS"], recvPort)
	}
	if !slices.Contains(rc.Expose, recvPort) {
		t.Errorf("receiver exposes %v, not its listening port %s", rc.Expose, recvPort)
	}
	checkHealthcheck(t, "receiver", rc, binary, "/healthz", recvPort)
	for k := range rc.Environment {
		if !slices.Contains(envNames(reflect.TypeOf(CLI{})), k) {
			t.Errorf("receiver environment sets %s, which relay does not read", k)
		}
	}

	// The demo instructions in the header use the same secret as the receiver.
	raw, _ := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if !strings.Contains(string(raw), "--secret "+rc.Environment["RECEIVER_SECRET"]) {
		t.Errorf("the header's `webhooks add --secret` does not match RECEIVER_SECRET")
	}
}

// checkHealthcheck: the service's probe runs our binary's healthcheck subcommand
// against the given path and port, and parses as our command line.
func checkHealthcheck(t *testing.T, name string, s service, binary, path, port string) {
	t.Helper()
	hc := s.Healthcheck
	if hc == nil || len(hc.Test) < 3 || hc.Test[0] != "CMD" {
		t.Errorf("%s: want an exec-form healthcheck [\"CMD\", %q, \"healthcheck\", ...], got %+v", name, binary, hc)
		return
	}
	if hc.Test[1] != binary {
		t.Errorf("%s healthcheck runs %q; the image's binary is %q", name, hc.Test[1], binary)
	}
	cli, err := parseCLI(t, s.Environment, hc.Test[2:])
	if err != nil || hc.Test[2] != "healthcheck" {
		t.Errorf("%s healthcheck %q: want relay healthcheck (%v)", name, hc.Test[2:], err)
		return
	}
	u, err := healthURL(cli.Healthcheck.Addr, cli.Healthcheck.Path)
	if err != nil {
		t.Errorf("%s healthcheck: %v", name, err)
		return
	}
	if want := "http://127.0.0.1:" + port + path; u != want {
		t.Errorf("%s healthcheck probes %s, want %s", name, u, want)
	}
}

func splitHostPort(addr string) (string, string, error) {
	u, err := healthURL(addr, "/")
	if err != nil {
		return "", "", err
	}
	pu, err := url.Parse(u)
	if err != nil {
		return "", "", err
	}
	return pu.Hostname(), pu.Port(), nil
}

var goDirective = regexp.MustCompile(`(?m)^go (\d+(?:\.\d+)*)\s*$`)

// imageBinary checks the Dockerfile and returns the path of the relay binary in the
// runtime image.
func imageBinary(t *testing.T) string {
	t.Helper()
	df := loadDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	if len(df.stages) < 2 {
		t.Fatalf("Dockerfile: want a multi-stage build, got %d stage(s)", len(df.stages))
	}
	names := map[string]stage{}
	for _, s := range df.stages {
		names[s.name] = s
	}
	builder, final := df.stages[0], df.stages[len(df.stages)-1]

	// The builder's Go is at least go.mod's: the golang image does not download a newer
	// toolchain (GOTOOLCHAIN=local).
	if !strings.HasPrefix(builder.image, "golang:") {
		t.Errorf("first stage %q, want a golang image", builder.image)
	}
	goVersion := strings.TrimPrefix(builder.image, "golang:")
	if v, ok := strings.CutPrefix(goVersion, "${GO_VERSION}"); ok {
		goVersion = df.args["GO_VERSION"] + v
	}
	goVersion, _, _ = strings.Cut(goVersion, "-")
	mod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := goDirective.FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	if versionLess(goVersion, string(m[1])) {
		t.Errorf("builder Go %s is older than go.mod's go %s", goVersion, m[1])
	}

	// Build: a static binary of ./cmd/relay, written where the runtime stage copies from.
	var output string
	for _, run := range builder.all("RUN") {
		if !strings.Contains(run, "go build") {
			continue
		}
		if !strings.Contains(run, "CGO_ENABLED=0") {
			t.Errorf("go build without CGO_ENABLED=0: the binary would need libc: %s", run)
		}
		f := strings.Fields(run)
		if i := slices.Index(f, "-o"); i >= 0 && i+1 < len(f) {
			output = f[i+1]
		}
		pkg := f[len(f)-1]
		if st, err := os.Stat(filepath.Join(repoRoot, pkg)); err != nil || !st.IsDir() {
			t.Errorf("go build of %s: no such package directory", pkg)
		}
	}
	if output == "" {
		t.Fatalf("builder stage has no `go build -o ...`")
	}
	for _, s := range df.stages {
		for _, cp := range s.all("COPY") {
			f := strings.Fields(cp)
			if from, ok := strings.CutPrefix(f[0], "--from="); ok {
				if _, ok := names[from]; !ok || from == "" {
					t.Errorf("COPY --from=%s: no such stage", from)
				}
				continue
			}
			for _, src := range f[:len(f)-1] { // sources from the build context
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("COPY %s: not in the repository", src)
				}
			}
		}
	}

	// Runtime: no Go toolchain, the binary from the builder, a non-root user, the port
	// and a healthcheck on /readyz through the binary itself.
	if strings.HasPrefix(final.image, "golang") {
		t.Errorf("runtime stage is %s: ship the binary, not the toolchain", final.image)
	}
	var binary string
	for _, cp := range final.all("COPY") {
		f := strings.Fields(cp)
		if f[0] == "--from="+builder.name && len(f) == 3 && f[1] == output {
			binary = f[2]
		}
	}
	if binary == "" {
		t.Fatalf("runtime stage does not COPY --from=%s %s", builder.name, output)
	}
	users := final.all("USER")
	if len(users) == 0 {
		t.Errorf("runtime stage sets no USER: it would run as root")
	} else if u, _, _ := strings.Cut(users[len(users)-1], ":"); u == "root" || u == "0" {
		t.Errorf("runtime USER %s is root", users[len(users)-1])
	}
	if !slices.Contains(final.all("EXPOSE"), "8080") {
		t.Errorf("runtime stage does not EXPOSE 8080")
	}
	hcs := final.all("HEALTHCHECK")
	if len(hcs) != 1 {
		t.Fatalf("runtime stage: want one HEALTHCHECK, got %d", len(hcs))
	}
	_, cmd, ok := strings.Cut(hcs[0], "CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK has no CMD: %s", hcs[0])
	}
	probe := execForm(t, "HEALTHCHECK", cmd)
	if probe[0] != binary {
		t.Errorf("HEALTHCHECK runs %s; the binary is %s", probe[0], binary)
	}
	env := map[string]string{}
	for _, e := range final.all("ENV") {
		for _, kv := range strings.Fields(e) {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	cli, err := parseCLI(t, env, probe[1:])
	if err != nil || probe[1] != "healthcheck" {
		t.Fatalf("HEALTHCHECK %q: want relay healthcheck (%v)", probe[1:], err)
	}
	if u, _ := healthURL(cli.Healthcheck.Addr, cli.Healthcheck.Path); u != "http://127.0.0.1:8080/readyz" {
		t.Errorf("HEALTHCHECK probes %s, want /readyz on the exposed port", u)
	}
	entry := execForm(t, "ENTRYPOINT", strings.Join(final.all("ENTRYPOINT"), ""))
	if entry[0] != binary {
		t.Errorf("ENTRYPOINT %v does not run %s", entry, binary)
	}
	if c := execForm(t, "CMD", strings.Join(final.all("CMD"), "")); !slices.Equal(c, []string{"run"}) {
		t.Errorf("CMD %v, want [\"run\"]", c)
	}
	return binary
}

// versionLess compares dotted versions numerically ("1.26" < "1.26.8" < "1.27").
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// The build context leaves out what the image must not contain or need not see, and
// keeps what the build reads.
func TestDockerignore(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.Trim(l, "/"))
		}
	}
	for _, must := range []string{".git", ".relay"} {
		if !slices.Contains(patterns, must) {
			t.Errorf(".dockerignore does not exclude %s", must)
		}
	}
	for _, keep := range []string{"go.mod", "go.sum", "cmd", "relay", "schema", "outbox"} {
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, keep); ok {
				t.Errorf(".dockerignore pattern %q excludes %s, which the build needs", p, keep)
			}
		}
	}
}
