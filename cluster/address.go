package cluster

import (
	"fmt"
	"net"
	"strconv"
)

// splitNodeAddress splits a node address into host and port, and refuses
// what no other node could dial: no port, a port out of range, no host
// or a wildcard host. Port 0 passes (a node may listen on one picked for
// it); CheckNodeAddress refuses it.
func splitNodeAddress(addr string) (string, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("node address %q: want host:port: %w", addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("node address %q: bad port %q", addr, portText)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		return "", 0, fmt.Errorf("node address %q: give the address other nodes reach it at, not a wildcard", addr)
	}
	return host, port, nil
}

// CheckNodeAddress reports why addr cannot be another node's address
// (--join, --initial-cluster, add-gateway), or nil: it must be host:port
// with a port from 1 to 65535 and a host that is not a wildcard, so that
// a typo is refused at once instead of being dialled in vain.
func CheckNodeAddress(addr string) error {
	_, port, err := splitNodeAddress(addr)
	if err == nil && port == 0 {
		err = fmt.Errorf("node address %q: port 0 cannot be dialled", addr)
	}
	return err
}
