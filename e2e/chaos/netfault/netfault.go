// Package netfault cuts the TCP traffic between chosen processes on
// 127.0.0.1 and heals it again, with iptables rules that match packets by
// the group id of the process that sends them.
//
// Why this way: the cluster under test runs as processes on one loopback
// interface, so an address cannot tell nodes apart, while network
// namespaces would need a bridge, addresses and routing per node, and a
// proxy on the node links would see only the links it was placed on (and
// restarts would go around it). Every node process runs instead with a
// group id of its own (exec.Cmd's SysProcAttr.Credential), which the
// iptables owner match sees on every packet the process sends. A cut
// between A and B is a blackhole, not a reset: their packets are dropped
// silently, so TCP stalls and retransmits as in a real partition, and the
// connections resume when the cut heals. Nothing but the tool's own
// processes on 127.0.0.1 is ever affected: every rule names one of their
// group ids.
//
// A cut between A and B drops, in both directions:
//   - A's packets to B's listening ports (new and open connections A made);
//   - A's packets on connections B made to A (A's replies). The OUTPUT hook
//     cannot see who receives a packet, so each connection is marked when it
//     opens with the group id of the process that opened it (CONNMARK), and
//     the rule matches that mark.
//
// All rules live in two chains of the tool's own, TOLEREX-CHAOS-<pid> (the
// marks, jumped to from OUTPUT) and TOLEREX-CHAOS-<pid>-CUT (the cuts), so
// teardown is one delete of the jump and a flush and delete of each chain;
// CleanStale removes the chains of runs that died without tearing down.
package netfault

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// ChainPrefix starts the name of every chain this package creates.
const ChainPrefix = "TOLEREX-CHAOS-"

// Endpoint is one process that cuts can separate.
type Endpoint struct {
	// Name identifies the endpoint in Cut.
	Name string
	// GID is the group id the process runs with; no other process may use
	// it while the Partitioner exists.
	GID uint32
	// Ports are the process's listening TCP ports on 127.0.0.1.
	Ports []int
}

// CutID identifies a cut for Heal.
type CutID int

// Partitioner installs and removes cuts between endpoints. Its methods
// may be called concurrently.
type Partitioner struct {
	chain, cutChain string
	endpoints       map[string]Endpoint

	mu     sync.Mutex
	cuts   map[CutID][][]string // each cut's rules
	nextID CutID
	closed bool
}

// Available reports why partitions cannot be made here, or nil: they need
// root and the iptables command.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("partitions need root (iptables and per-process group ids)")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return fmt.Errorf("partitions need iptables: %w", err)
	}
	return nil
}

// New installs the tool's chains for the endpoints and returns a
// Partitioner with no cuts. Start the endpoints' processes after New: only
// connections opened while the chains exist are marked. Close removes the
// chains. A process has one Partitioner at a time: the chains are named
// after its pid.
func New(endpoints []Endpoint) (*Partitioner, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	p := &Partitioner{
		chain:     ChainPrefix + strconv.Itoa(os.Getpid()),
		endpoints: make(map[string]Endpoint, len(endpoints)),
		cuts:      make(map[CutID][][]string),
	}
	p.cutChain = p.chain + "-CUT"
	gids := make(map[uint32]string)
	for _, e := range endpoints {
		if e.GID == 0 {
			return nil, fmt.Errorf("endpoint %s: group id 0 would match root's own processes", e.Name)
		}
		if other, dup := gids[e.GID]; dup {
			return nil, fmt.Errorf("endpoints %s and %s share group id %d", other, e.Name, e.GID)
		}
		if _, dup := p.endpoints[e.Name]; dup {
			return nil, fmt.Errorf("endpoint %s named twice", e.Name)
		}
		gids[e.GID] = e.Name
		p.endpoints[e.Name] = e
	}
	// Chains with this process's pid are stale: left by an earlier process
	// that had the same pid, or by a Partitioner of this process that was
	// not closed (there is one at a time per process).
	if err := p.teardown(); err != nil {
		return nil, fmt.Errorf("remove stale partition chains: %w", err)
	}
	steps := [][]string{
		{"-N", p.chain},
		{"-N", p.cutChain},
	}
	for _, e := range endpoints {
		gid := strconv.FormatUint(uint64(e.GID), 10)
		steps = append(steps, []string{"-A", p.chain, "-m", "owner", "--gid-owner", gid,
			"-m", "conntrack", "--ctstate", "NEW", "-j", "CONNMARK", "--set-mark", gid})
	}
	steps = append(steps,
		[]string{"-A", p.chain, "-j", p.cutChain},
		[]string{"-I", "OUTPUT", "1", "-j", p.chain},
	)
	for _, args := range steps {
		if err := iptables(args...); err != nil {
			return nil, errors.Join(fmt.Errorf("install partition chains: %w", err), p.teardown())
		}
	}
	return p, nil
}

// Chain is the name of the Partitioner's main chain.
func (p *Partitioner) Chain() string { return p.chain }

// Cut stops all TCP traffic between every endpoint of a and every
// endpoint of b until Heal. Cuts may overlap.
func (p *Partitioner) Cut(a, b []string) (CutID, error) {
	var rules [][]string
	for _, an := range a {
		ea, ok := p.endpoints[an]
		if !ok {
			return 0, fmt.Errorf("cut: unknown endpoint %q", an)
		}
		for _, bn := range b {
			eb, ok := p.endpoints[bn]
			if !ok {
				return 0, fmt.Errorf("cut: unknown endpoint %q", bn)
			}
			if an == bn {
				return 0, fmt.Errorf("cut: %s is on both sides", an)
			}
			rules = append(rules, p.pairRules(ea, eb)...)
			rules = append(rules, p.pairRules(eb, ea)...)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, errors.New("cut: partitioner closed")
	}
	for i, rule := range rules {
		if err := iptables(append([]string{"-A", p.cutChain}, rule...)...); err != nil {
			p.remove(rules[:i])
			return 0, fmt.Errorf("cut %v from %v: %w", a, b, err)
		}
	}
	p.nextID++
	p.cuts[p.nextID] = rules
	return p.nextID, nil
}

// pairRules drop what from sends to to.
func (p *Partitioner) pairRules(from, to Endpoint) [][]string {
	gid := strconv.FormatUint(uint64(from.GID), 10)
	var rules [][]string
	if len(to.Ports) > 0 {
		ports := make([]string, len(to.Ports))
		for i, port := range to.Ports {
			ports[i] = strconv.Itoa(port)
		}
		rules = append(rules, []string{"-p", "tcp", "-m", "owner", "--gid-owner", gid,
			"-m", "multiport", "--dports", strings.Join(ports, ","), "-j", "DROP"})
	}
	rules = append(rules, []string{"-m", "owner", "--gid-owner", gid,
		"-m", "connmark", "--mark", strconv.FormatUint(uint64(to.GID), 10), "-j", "DROP"})
	return rules
}

// Heal removes one cut. Traffic that another cut still blocks stays
// blocked.
func (p *Partitioner) Heal(id CutID) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	rules, ok := p.cuts[id]
	if !ok {
		return fmt.Errorf("heal: no cut %d", id)
	}
	delete(p.cuts, id)
	if err := p.remove(rules); err != nil {
		return fmt.Errorf("heal cut %d: %w", id, err)
	}
	return nil
}

// HealAll removes every cut.
func (p *Partitioner) HealAll() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cuts = make(map[CutID][][]string)
	if p.closed {
		return nil
	}
	if err := iptables("-F", p.cutChain); err != nil {
		return fmt.Errorf("heal all cuts: %w", err)
	}
	return nil
}

// Cuts is the number of cuts in place.
func (p *Partitioner) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.cuts)
}

// remove deletes rules from the cut chain (one copy each).
func (p *Partitioner) remove(rules [][]string) error {
	var errs []error
	for _, rule := range rules {
		if err := iptables(append([]string{"-D", p.cutChain}, rule...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close removes every cut and the chains. It is safe to call more than
// once.
func (p *Partitioner) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.cuts = make(map[CutID][][]string)
	if err := p.teardown(); err != nil {
		return fmt.Errorf("remove partition chains: %w", err)
	}
	return nil
}

// teardown removes the jump from OUTPUT and both chains, whatever of them
// exists.
func (p *Partitioner) teardown() error {
	return removeChains(p.chain)
}

// removeChains removes a main chain, its cut chain and every jump to the
// main chain from OUTPUT; missing pieces are fine.
func removeChains(chain string) error {
	var errs []error
	for range 16 { // bounded: one jump per New, normally
		if iptables("-D", "OUTPUT", "-j", chain) != nil {
			break
		}
	}
	for _, c := range []string{chain, chain + "-CUT"} {
		if !chainExists(c) {
			continue
		}
		if err := iptables("-F", c); err != nil {
			errs = append(errs, err)
		}
	}
	for _, c := range []string{chain, chain + "-CUT"} {
		if !chainExists(c) {
			continue
		}
		if err := iptables("-X", c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func chainExists(chain string) bool {
	return iptables("-n", "-L", chain) == nil
}

// CleanStale removes the chains of earlier runs whose process is gone
// (they crashed or were killed before tearing down) and returns their
// names. Chains of live processes, other runs going on now, are kept.
func CleanStale() ([]string, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	out, err := iptablesOutput("-S")
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	var removed []string
	var errs []error
	for _, chain := range staleChains(out, alive) {
		if err := removeChains(chain); err != nil {
			errs = append(errs, fmt.Errorf("remove stale chain %s: %w", chain, err))
			continue
		}
		removed = append(removed, chain)
	}
	return removed, errors.Join(errs...)
}

// staleChains lists the main chains in iptables -S output whose pid is
// not alive.
func staleChains(listing string, alive func(pid int) bool) []string {
	var chains []string
	for _, line := range strings.Split(listing, "\n") {
		fields := strings.Fields(line)
		if len(fields) != 2 || fields[0] != "-N" || !strings.HasPrefix(fields[1], ChainPrefix) {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(fields[1], ChainPrefix))
		if err != nil || pid <= 0 { // a -CUT chain, or not ours
			continue
		}
		if !alive(pid) && !slices.Contains(chains, fields[1]) {
			chains = append(chains, fields[1])
		}
	}
	return chains
}

// alive reports whether a process with this pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// iptables runs iptables with args, waiting for the xtables lock.
func iptables(args ...string) error {
	_, err := iptablesOutput(args...)
	return err
}

func iptablesOutput(args ...string) (string, error) {
	cmd := exec.Command("iptables", append([]string{"-w", "5"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
