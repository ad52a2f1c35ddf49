package schema_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/testutil"
)

// 00012_kept_log rewrote relay.event_key to be inlined (it is indexed, so every emit
// computes it): its results are still 00011's, for every shape of data, and it is
// inlined where it is used.
func TestEventKeyKeepsItsResultsAndIsInlined(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	// 00011_ordering's body, as a reference.
	if _, err := db.Pool.Exec(ctx, `CREATE FUNCTION pg_temp.key_00011(event text, data json, ordering_key text) RETURNS text
		LANGUAGE sql IMMUTABLE AS $fn$
		    SELECT CASE WHEN length(k) <= 200 THEN k ELSE 'sha256:' || encode(sha256(convert_to(k, 'UTF8')), 'hex') END
		      FROM (SELECT coalesce(ordering_key,
		                            nullif(data -> split_part(event, '.', 1) -> 'current' ->> 'id', ''),
		                            nullif(data -> split_part(event, '.', 1) -> 'previous' ->> 'id', '')) AS k) AS s
		$fn$`); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 300)
	cases := []struct{ event, data, key string }{
		{"post.edited", `{"post":{"current":{"id":"a"},"previous":{}}}`, ""},
		{"post.deleted", `{"post":{"current":{},"previous":{"id":"b"}}}`, ""},
		{"post.deleted", `{"post":{"current":{"id":""},"previous":{"id":"b"}}}`, ""},
		{"post.edited", `{"post":{"current":{"id":"a","id":"z"},"previous":{}}}`, ""},
		{"post.edited", `{"post":{"current":{"id":"a"}},"post":{"current":{"id":"y"}}}`, ""},
		{"post.edited", `{"post":{"current":{"id":5}}}`, ""},
		{"post.edited", `{"post":{"current":{"id":null},"previous":{"id":"p"}}}`, ""},
		{"post.edited", `{"post":{"current":{"id":{"x":[1,"2"]}}}}`, ""},
		{"post.edited", `{"post":[{"current":{"id":"a"}}]}`, ""},
		{"post.edited", `[]`, ""}, {"post.edited", `1`, ""}, {"post.edited", `null`, ""}, {"post.edited", `"s"`, ""},
		{"site.changed", `{}`, ""},
		{"post", `{"post":{"current":{"id":"a"}}}`, ""},
		{"post.edited", `{"post":{"current":{"id":"\u0041\n\"q\""}}}`, ""},
		{"post.edited", `{ "post" : { "current" : { "id" : "spaced" } } }`, ""},
		{"post.edited", `{"post":{"current":{"id":"a"}}}`, "explicit"},
		{"post.edited", `{"post":{"current":{"id":"` + long + `"}}}`, ""},
		{"post.edited", `{"post":{"current":{"id":"` + long[:200] + `"}}}`, ""},
		{"post.edited", `{"post":{"current":{"id":"` + long[:201] + `"}}}`, ""},
		{"member.added", `{"member":{"current":{"id":"m"},"previous":{}}}`, ""},
		{"post.tag.attached", `{"post":{"current":{"id":"a"}},"tag":{"current":{"id":"t"}}}`, ""},
		{"stripe.charge.refunded", `{"id":"evt_1","data":{"object":{}}}`, ""},
	}
	for _, c := range cases {
		var key *string
		if c.key != "" {
			key = &c.key
		}
		var got, want *string
		if err := db.Pool.QueryRow(ctx, `SELECT relay.event_key($1, $2::json, $3), pg_temp.key_00011($1, $2::json, $3)`,
			c.event, c.data, key).Scan(&got, &want); err != nil {
			t.Fatal(err)
		}
		if (got == nil) != (want == nil) || got != nil && *got != *want {
			t.Errorf("event_key(%s, %.60s, %v) = %v, 00011 gave %v", c.event, c.data, key, deref(got), deref(want))
		}
	}
	var plan []string
	rows, err := db.Pool.Query(ctx, `EXPLAIN VERBOSE SELECT key FROM relay.events`)
	if err == nil {
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		t.Fatal(err)
	}
	if text := strings.Join(plan, "\n"); strings.Contains(text, "event_key(") || !strings.Contains(text, "json_extract_path_text") {
		t.Errorf("relay.events.key is not inlined:\n%s", text)
	}
}

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}
