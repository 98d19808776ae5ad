package e2e

import (
	"fmt"
	"os"
	"testing"
)

// bin is the tolerex binary built for this test run.
var bin string

// TestMain builds the binary once, or takes the one $TOLEREX_E2E_BIN names
// (to run the tests against another build, say an older one, to see a
// regression test fail).
func TestMain(m *testing.M) {
	if given := os.Getenv("TOLEREX_E2E_BIN"); given != "" {
		bin = given
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "tolerex-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err = BuildBinary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
