package store_test

import (
	"context"
	"encoding/json"
	"testing"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/testutil"
)

// outboxRowsRead runs the subscriber's select for the next batch under EXPLAIN ANALYZE
// and returns how many outbox rows its plan read.
func outboxRowsRead(t *testing.T, db *testutil.DB, schema wsql.SchemaAdapter) int {
	t.Helper()
	q, err := schema.SelectQuery(wsql.SelectQueryParams{Topic: store.OutboxTopic, ConsumerGroup: store.ConsumerGroup,
		OffsetsAdapter: store.OutboxOffsets()})
	if err != nil {
		t.Fatal(err)
	}
	var plan []byte
	err = pgx.BeginTxFunc(context.Background(), db.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), "EXPLAIN (ANALYZE, FORMAT JSON) "+q.Query, q.Args...).Scan(&plan)
	})
	if err != nil {
		t.Fatal(err)
	}
	var doc []struct{ Plan node }
	if err := json.Unmarshal(plan, &doc); err != nil {
		t.Fatal(err)
	}
	return doc[0].Plan.rowsReadFrom("outbox")
}

type node struct {
	NodeType     string  `json:"Node Type"`
	RelationName string  `json:"Relation Name"`
	ActualRows   float64 `json:"Actual Rows"`
	Loops        float64 `json:"Actual Loops"`
	Removed      float64 `json:"Rows Removed by Filter"`
	Rechecked    float64 `json:"Rows Removed by Index Recheck"`
	Plans        []node  `json:"Plans"`
}

// rowsReadFrom sums the rows the plan's scans of relation produced or threw away.
func (n node) rowsReadFrom(relation string) int {
	total := 0
	if n.RelationName == relation {
		total += int((n.ActualRows + n.Removed + n.Rechecked) * max(n.Loops, 1))
	}
	for _, c := range n.Plans {
		total += c.rowsReadFrom(relation)
	}
	return total
}

// The outbox read must cost one batch, whatever the backlog: the row comparison in
// primary-key order reads the batch's rows, where watermill-sql's default select reads
// every remaining row (which made a 1M backlog drain 10× slower than 100k).
func TestOutboxBatchReadsOnlyItsOwnRows(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	const backlog = 20_000
	if _, err := db.Pool.Exec(ctx, `SELECT relay.emit('post.published', '{}') FROM generate_series(1, $1)`, backlog); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO relay.outbox_offsets (consumer_group, offset_acked, last_processed_transaction_id)
		VALUES ($1, 0, '0')`, store.ConsumerGroup); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `ANALYZE relay.outbox`); err != nil {
		t.Fatal(err)
	}
	if n := outboxRowsRead(t, db, store.NewOutboxSchema(100)); n > 101 {
		t.Errorf("the relay's select read %d outbox rows for a batch of 100 at a backlog of %d", n, backlog)
	}
	// The check itself would see the regression: watermill-sql's default select reads the
	// whole backlog.
	def := wsql.DefaultPostgreSQLSchema{GenerateMessagesTableName: func(string) string { return store.OutboxTable }, SubscribeBatchSize: 100}
	if n := outboxRowsRead(t, db, def); n < backlog {
		t.Errorf("watermill-sql's default select read %d rows; the test no longer tells the two apart", n)
	}
}
