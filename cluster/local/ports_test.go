package local

import "testing"

func TestPortPickerNeverTwice(t *testing.T) {
	p := NewPortPicker()
	seen := make(map[int]bool)
	base, err := p.Block(10)
	if err != nil {
		t.Fatal(err)
	}
	for port := base; port < base+10; port++ {
		seen[port] = true
	}
	for range 300 {
		port, err := p.Port()
		if err != nil {
			t.Fatal(err)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		if port < PickLow || port >= PickHigh {
			t.Fatalf("port %d outside %d-%d", port, PickLow, PickHigh)
		}
		seen[port] = true
	}
}

func TestPortPickerAddrs(t *testing.T) {
	p := NewPortPicker()
	g, err := p.Addrs(Gateway, 0)
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Addrs(Member, 0)
	if err != nil {
		t.Fatal(err)
	}
	if g.Node == "" || g.Admin == "" || g.Client == "" || m.Node == "" || m.Admin == "" || m.Client != "" {
		t.Fatalf("gateway %+v, member %+v", g, m)
	}
}

// TestFixedPorts: `tolerex dev`'s layout.
func TestFixedPorts(t *testing.T) {
	f := FixedPorts{Host: "127.0.0.1", ClientHost: "0.0.0.0", ClientPort: 6666, NodePort: 7000, AdminPort: 8000}
	for _, tc := range []struct {
		role  Role
		index int
		want  Addrs
	}{
		{Gateway, 0, Addrs{Node: "127.0.0.1:7000", Admin: "127.0.0.1:8000", Client: "0.0.0.0:6666"}},
		{Gateway, 2, Addrs{Node: "127.0.0.1:7200", Admin: "127.0.0.1:8200", Client: "0.0.0.0:6668"}},
		{Member, 0, Addrs{Node: "127.0.0.1:7001", Admin: "127.0.0.1:8001"}},
		{Member, 98, Addrs{Node: "127.0.0.1:7099", Admin: "127.0.0.1:8099"}},
	} {
		got, err := f.Addrs(tc.role, tc.index)
		if err != nil || got != tc.want {
			t.Errorf("%s %d: %+v, %v; want %+v", tc.role, tc.index, got, err, tc.want)
		}
	}
	if _, err := f.Addrs("witness", 0); err == nil {
		t.Error("an unknown role got addresses")
	}
}
