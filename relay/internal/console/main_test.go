package console_test

import (
	"testing"

	"github.com/relayhq/relay/testutil"
)

// TestMain stops the shared browser, then the shared PostgreSQL cluster, and checks that
// no goroutine outlived the tests.
func TestMain(m *testing.M) { testutil.Main(m, stopBrowser, testutil.CheckGoroutines) }
