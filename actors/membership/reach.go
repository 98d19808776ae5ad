package membership

import (
	"maps"
	"slices"
	"strings"
)

// Reach keeps which gateways a member has found accepting connections, so
// that the member hands a heartbeat to the remote layer only for a
// gateway that is up. protoactor's endpoint writer, after a dial that
// fails, sleeps 2 s before it reports the endpoint gone, and everything
// sent to that address meanwhile waits and is then dropped: a member
// started before the gateways, or one that tried a gateway while it was
// down, was deaf to that gateway for up to 2 s after it came up. So a
// gateway not known to be up gets a connection first (a probe, made by
// the member supervisor; with TLS the remote layer's handshake, package
// probe), and heartbeats go to it once that connection was accepted. A
// gateway stays reached until the remote layer reports the connection to
// it broken. Why a gateway's last probe failed is kept for the member's
// /readyz. It is a pure state machine, fed by the member supervisor.
type Reach struct {
	reached map[string]bool   // accepted a probe since the connection last broke
	probing map[string]bool   // a probe in flight
	failed  map[string]string // why the last probe failed, by address
}

// Contact is what to do with a heartbeat that is due for a gateway.
type Contact int

const (
	// ContactSend: the gateway is up; send the heartbeat.
	ContactSend Contact = iota
	// ContactProbe: not known to be up; probe it (and send once it
	// accepted a connection).
	ContactProbe
	// ContactWait: a probe of it is in flight; send nothing yet.
	ContactWait
)

// NewReach starts with no gateway known to be up.
func NewReach() *Reach {
	return &Reach{reached: map[string]bool{}, probing: map[string]bool{}, failed: map[string]string{}}
}

// Contact says what to do with a heartbeat due for address; ContactProbe
// counts the probe as started.
func (r *Reach) Contact(address string) Contact {
	switch {
	case r.reached[address]:
		return ContactSend
	case r.probing[address]:
		return ContactWait
	}
	r.probing[address] = true
	return ContactProbe
}

// Probed records a probe's outcome: err is nil if the gateway accepted
// the connection. It reports whether the reason the gateway is
// unreachable changed (worth a log line).
func (r *Reach) Probed(address string, err error) (changed bool) {
	delete(r.probing, address)
	if err == nil {
		r.reached[address] = true
		_, changed = r.failed[address]
		delete(r.failed, address)
		return changed
	}
	reason := err.Error()
	changed = r.failed[address] != reason
	r.failed[address] = reason
	return changed
}

// Unreachable says why each gateway whose last probe failed is
// unreachable, by address ("" when none is).
func (r *Reach) Unreachable() string {
	var reasons []string
	for _, address := range slices.Sorted(maps.Keys(r.failed)) {
		reasons = append(reasons, "gateway "+address+": "+r.failed[address])
	}
	return strings.Join(reasons, "; ")
}

// Lost records that the connection to a gateway broke (or could not be
// made): it is probed again before the next heartbeat to it.
func (r *Reach) Lost(address string) {
	delete(r.reached, address)
}
