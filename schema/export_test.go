package schema

import "context"

// UpTo applies the migrations up to and including version, so that upgrade tests can
// start from an older schema.
func UpTo(ctx context.Context, databaseURL string, version int64) error {
	db, err := open(databaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := provider(db)
	if err != nil {
		return err
	}
	return withLock(ctx, db, func() error {
		if _, err := db.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS relay`); err != nil {
			return err
		}
		_, err := p.UpTo(ctx, version)
		return err
	})
}
