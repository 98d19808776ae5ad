package local

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// Addrs are the addresses one node listens on.
type Addrs struct {
	Node  string
	Admin string
	// Client is a gateway's HaToKuSe address ("" for a member).
	Client string
}

// An Addresser gives every node of a cluster its addresses.
type Addresser interface {
	// Addrs returns the addresses of node index (from 0) of role.
	Addrs(role Role, index int) (Addrs, error)
}

// The ports a PortPicker picks from: below Linux's ephemeral range (32768
// and up), so no outgoing connection takes a port between its pick and the
// moment its process listens on it.
const (
	PickLow  = 20000
	PickHigh = 32000
)

// PortPicker picks free ports on 127.0.0.1 at random in PickLow..PickHigh,
// and never the same port twice: a port is only bound once its process
// starts, and two random picks among 12,000 ports for a cluster of eight
// collided in about one e2e run in ten. Share one picker among everything
// that picks ports in a process. It is safe for concurrent use.
type PortPicker struct {
	mu    sync.Mutex
	rng   *rand.Rand
	taken map[int]bool
}

// NewPortPicker returns a picker that has handed out nothing yet.
func NewPortPicker() *PortPicker {
	return &PortPicker{
		rng:   rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid()))),
		taken: make(map[int]bool),
	}
}

// Port returns a port that was free a moment ago.
func (p *PortPicker) Port() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range 500 {
		port := PickLow + p.rng.IntN(PickHigh-PickLow)
		if p.taken[port] {
			continue
		}
		l, err := net.Listen("tcp", loopback(port))
		if err != nil {
			continue
		}
		l.Close()
		p.taken[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port found in %d-%d", PickLow, PickHigh)
}

// Addr returns a 127.0.0.1 address whose port was free a moment ago.
func (p *PortPicker) Addr() (string, error) {
	port, err := p.Port()
	if err != nil {
		return "", err
	}
	return loopback(port), nil
}

// Block returns the first of n consecutive ports that were all free a
// moment ago (for a layout of fixed offsets, as `tolerex dev` uses).
func (p *PortPicker) Block(n int) (int, error) {
	if n < 1 || n >= PickHigh-PickLow {
		return 0, fmt.Errorf("port block of %d ports", n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for range 100 {
		base := PickLow + p.rng.IntN(PickHigh-PickLow-n)
		if p.blockFree(base, n) {
			for port := base; port < base+n; port++ {
				p.taken[port] = true
			}
			return base, nil
		}
	}
	return 0, fmt.Errorf("no block of %d free ports found in %d-%d", n, PickLow, PickHigh)
}

// blockFree reports whether every port of base..base+n-1 is neither handed
// out nor bound; it holds them all at once while it checks.
func (p *PortPicker) blockFree(base, n int) bool {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for port := base; port < base+n; port++ {
		if p.taken[port] {
			return false
		}
		l, err := net.Listen("tcp", loopback(port))
		if err != nil {
			return false
		}
		held = append(held, l)
	}
	return true
}

// Addrs picks fresh ports for a node: node and admin, and client for a
// gateway.
func (p *PortPicker) Addrs(role Role, _ int) (Addrs, error) {
	var a Addrs
	var err error
	if a.Node, err = p.Addr(); err != nil {
		return Addrs{}, err
	}
	if a.Admin, err = p.Addr(); err != nil {
		return Addrs{}, err
	}
	if role == Gateway {
		if a.Client, err = p.Addr(); err != nil {
			return Addrs{}, err
		}
	}
	return a, nil
}

// FixedPorts is the layout of `tolerex dev`: gateway g (from 1) listens on
// NodePort and AdminPort plus 100*(g-1) and serves HaToKuSe on ClientPort
// plus g-1; member i (from 1) listens on NodePort and AdminPort plus i. So
// up to 99 members fit between two gateways.
type FixedPorts struct {
	// Host is the address the node and admin ports listen on.
	Host string
	// ClientHost is the address the gateways serve HaToKuSe on.
	ClientHost string
	ClientPort int
	NodePort   int
	AdminPort  int
}

// Addrs returns the addresses of node index (from 0) of role.
func (f FixedPorts) Addrs(role Role, index int) (Addrs, error) {
	if index < 0 {
		return Addrs{}, fmt.Errorf("node index %d", index)
	}
	at := func(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
	switch role {
	case Gateway:
		return Addrs{
			Node:   at(f.Host, f.NodePort+100*index),
			Admin:  at(f.Host, f.AdminPort+100*index),
			Client: at(f.ClientHost, f.ClientPort+index),
		}, nil
	case Member:
		return Addrs{Node: at(f.Host, f.NodePort+index+1), Admin: at(f.Host, f.AdminPort+index+1)}, nil
	}
	return Addrs{}, errors.New("unknown role " + string(role))
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
