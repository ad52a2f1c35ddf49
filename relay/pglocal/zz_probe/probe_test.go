package probe

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/relayhq/relay/relay/pglocal"
)

func count(ctx context.Context, url string) string {
	c, err := pgx.Connect(ctx, url)
	if err != nil { return err.Error() }
	defer c.Close(ctx)
	var n int
	var xs string
	if err := c.QueryRow(ctx, "select count(*), string_agg(xmin::text||':'||v, ',') from kept").Scan(&n, &xs); err != nil { return err.Error() }
	return fmt.Sprint(n, " ", xs)
}

func TestProbe(t *testing.T) {
	ctx := context.Background()
	sync := os.Getenv("SC")
	for round := 0; round < 5; round++ {
		dir, _ := os.MkdirTemp("/tmp", "zzp-*"); os.Chmod(dir, 0o755)
		defer os.RemoveAll(dir)
		srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: dir + "/d", Fast: true})
		if err != nil { t.Fatal(err) }
		c, _ := pgx.Connect(ctx, srv.URL("postgres"))
		if sync != "" { c.Exec(ctx, "alter system set synchronous_commit = on"); c.Exec(ctx, "select pg_reload_conf()") }
		c.Exec(ctx, "create table kept (v int); insert into kept values (42)")
		c.Close(ctx)
		srv.Restart(ctx)
		c, _ = pgx.Connect(ctx, srv.URL("postgres"))
		c.Exec(ctx, "insert into kept values (43)")
		c.Close(ctx)
		srv.Kill()
		srv.Restart(ctx)
		a := count(ctx, srv.URL("postgres"))
		srv.Stop(ctx)
		srv.Restart(ctx)
		b := count(ctx, srv.URL("postgres"))
		srv.Stop(ctx)
		fmt.Printf("round %d: after kill: %s | after clean restart: %s\n", round, a, b)
	}
}
