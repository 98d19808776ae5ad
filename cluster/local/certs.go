package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tolerex/tolerex/cluster/certs"
)

// EnsureCerts generates the cluster CA and the node certificates in dir
// unless its CA certificate is there already, so a cluster started again on
// the same dir keeps its certificates. hosts are extra names or addresses
// of the nodes (localhost, 127.0.0.1 and ::1 are always in). It reports
// whether it generated them.
func EnsureCerts(dir string, hosts []string) (generated bool, err error) {
	if _, err := os.Stat(filepath.Join(dir, certs.CACertFile)); err == nil {
		return false, nil
	}
	if _, err := certs.Generate(dir, certs.GenerateOptions{Hosts: hosts}); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, fmt.Errorf("%s holds some certificate files but not %s; remove it or complete it: %w", dir, certs.CACertFile, err)
		}
		return false, err // certs.Generate says what it was doing
	}
	return true, nil
}
