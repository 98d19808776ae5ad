package cluster

import (
	"strings"
	"testing"
)

func TestCheckNodeAddress(t *testing.T) {
	for _, tc := range []struct {
		addr, wantErr string
	}{
		{"127.0.0.1:7000", ""},
		{"gw-1.tolerex.svc:7000", ""},
		{"[::1]:7000", ""},
		{"127.0.0.1", "want host:port"},
		{"notanaddr", "want host:port"},
		{"127.0.0.1:http", "bad port"},
		{"127.0.0.1:70000", "bad port"},
		{"127.0.0.1:0", "port 0"},
		{":7000", "not a wildcard"},
		{"0.0.0.0:7000", "not a wildcard"},
		{"[::]:7000", "not a wildcard"},
	} {
		err := CheckNodeAddress(tc.addr)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("CheckNodeAddress(%q) = %v, want nil", tc.addr, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("CheckNodeAddress(%q) = %v, want an error saying %q", tc.addr, err, tc.wantErr)
		}
	}
}
