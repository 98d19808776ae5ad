//go:build !(linux || darwin || freebsd)

package diskspace

import (
	"errors"
	"runtime"
)

func statfs(string) (Usage, error) {
	return Usage{}, errors.New("free space is not measured on " + runtime.GOOS)
}
