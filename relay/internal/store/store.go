// Package store owns every state change of a delivery and of a webhook's delivery state:
// fan-out, claim, record, release, disable-and-cancel, redeliver, prune. The pipeline,
// the CLI, the Admin and audit APIs and maintenance all change state through it (or
// through the SQL functions it calls, which triggers use too), so each rule is written
// once. Reads that change nothing (listings, status) live with their callers.
package store

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Status is a delivery's state.
type Status string

// A delivery is Pending while it waits for its first attempt or a retry (or, held, for
// the one before it of its ordered key), Succeeded after a 2xx, Failed when its retry
// schedule ran out (or on 410 Gone), Cancelled when its webhook was disabled or deleted,
// and Skipped when an operator passed over it after it failed (Skip).
const (
	Pending   Status = "pending"
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	Cancelled Status = "cancelled"
	Skipped   Status = "skipped"
)

// Statuses lists every Status, in the order above.
var Statuses = []Status{Pending, Succeeded, Failed, Cancelled, Skipped}

// StatusNames lists the statuses for a message: "pending, succeeded, … or skipped".
func StatusNames() string {
	names := make([]string, len(Statuses))
	for i, st := range Statuses {
		names[i] = string(st)
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// ParseStatus reads a Status; ok is false for anything else.
func ParseStatus(s string) (Status, bool) {
	for _, st := range Statuses {
		if string(st) == s {
			return st, true
		}
	}
	return "", false
}

// The outbox is a watermill-sql topic table; every relay reads it as one consumer
// group, so each event is fanned out by one relay at a time.
const (
	OutboxTopic   = "outbox"
	OutboxTable   = "relay.outbox"
	OffsetsTable  = "relay.outbox_offsets"
	ConsumerGroup = "relay"
)

// Querier is what a statement runs on: a pool, a connection or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Beginner is a Querier that can also begin transactions (a pool or a connection).
type Beginner interface {
	Querier
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Transient reports errors worth retrying: serialization failures, deadlocks, and
// connection-level failures (no SQLSTATE at all).
func Transient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003", "08006":
			return true
		}
		return false
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// clip keeps what is echoed back of a caller's input short.
func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}
