package server_test

import (
	"testing"

	"github.com/relayhq/relay/testutil"
	"github.com/relayhq/relay/testutil/ghost"
)

// TestMain stops the shared PostgreSQL cluster and the shared Ghost site the tests
// started.
func TestMain(m *testing.M) { testutil.Main(m, ghost.StopShared, testutil.CheckGoroutines) }
