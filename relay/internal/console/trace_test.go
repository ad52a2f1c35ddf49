package console_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// slowTracer prints the statements slower than 3 ms, for finding what makes a page of
// the benchmark slow.
type slowTracer struct{}

type startKey struct{}

func (slowTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, startKey{}, [2]any{time.Now(), d.SQL})
}

func (slowTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	v, _ := ctx.Value(startKey{}).([2]any)
	if v[0] == nil {
		return
	}
	if el := time.Since(v[0].(time.Time)); el > 3*time.Millisecond {
		sql := strings.Join(strings.Fields(v[1].(string)), " ")
		if len(sql) > 160 {
			sql = sql[:160]
		}
		fmt.Printf("SLOW %v %s\n", el.Round(100*time.Microsecond), sql)
	}
}
