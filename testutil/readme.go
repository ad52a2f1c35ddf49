package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

var (
	sqlBlock    = regexp.MustCompile("(?s)```sql\n(.*?)```")
	psqlVarRefs = regexp.MustCompile(`:'([a-z_]+)'`)
)

// READMESQL returns the SQL blocks of the README's section under heading (a "## " line
// such as "## Auditing", up to the next "## "), in order and as written, so that tests
// and benchmarks run exactly what the README shows.
func READMESQL(t testing.TB, heading string) []string {
	t.Helper()
	_, here, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testutil: cannot locate the module's README")
	}
	readme, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "README.md"))
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	_, section, ok := strings.Cut(string(readme), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("testutil: README.md has no %q section", heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for _, m := range sqlBlock.FindAllStringSubmatch(section, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// READMEQuery returns the SQL block of the README's section under heading whose first
// line is the comment "-- " + title: how a test names one documented query.
func READMEQuery(t testing.TB, heading, title string) string {
	t.Helper()
	for _, b := range READMESQL(t, heading) {
		if first, _, _ := strings.Cut(b, "\n"); first == "-- "+title {
			return b
		}
	}
	t.Fatalf("testutil: README.md's %q section has no SQL block starting %q", heading, "-- "+title)
	return ""
}

// PsqlVars turns a documented query's psql variables (:'name', as in psql -v
// name=value) into parameters $1, $2, … with their values from vars, and drops the
// trailing semicolon, so that pgx runs the query as psql would.
func PsqlVars(sql string, vars map[string]any) (string, []any, error) {
	var args []any
	index := map[string]int{}
	var missing []string
	out := psqlVarRefs.ReplaceAllStringFunc(sql, func(m string) string {
		name := psqlVarRefs.FindStringSubmatch(m)[1]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		if _, seen := index[name]; !seen {
			args = append(args, v)
			index[name] = len(args)
		}
		return "$" + strconv.Itoa(index[name])
	})
	if len(missing) > 0 {
		return "", nil, fmt.Errorf("no value for psql variable(s) %s", strings.Join(missing, ", "))
	}
	return strings.TrimSuffix(strings.TrimSpace(out), ";"), args, nil
}
