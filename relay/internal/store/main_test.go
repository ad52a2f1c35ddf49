package store_test

import (
	"testing"

	"github.com/relayhq/relay/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
