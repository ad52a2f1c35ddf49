package server_test

import (
	"testing"

	"github.com/relayhq/relay/testutil"
)

// TestMain stops the shared PostgreSQL cluster the tests started.
func TestMain(m *testing.M) { testutil.Main(m) }
