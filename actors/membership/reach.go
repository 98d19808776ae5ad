package membership

// Reach keeps which gateways a member has found accepting connections, so
// that the member hands a heartbeat to the remote layer only for a
// gateway that is up. protoactor's endpoint writer, after a dial that
// fails, sleeps 2 s before it reports the endpoint gone, and everything
// sent to that address meanwhile waits and is then dropped: a member
// started before the gateways, or one that tried a gateway while it was
// down, was deaf to that gateway for up to 2 s after it came up. So a
// gateway not known to be up gets a plain TCP connection first (a probe,
// made by the member supervisor), and heartbeats go to it once that
// connection was accepted. A gateway stays reached until the remote layer
// reports the connection to it broken. It is a pure state machine, fed by
// the member supervisor.
type Reach struct {
	reached map[string]bool // accepted a probe since the connection last broke
	probing map[string]bool // a probe in flight
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
	return &Reach{reached: map[string]bool{}, probing: map[string]bool{}}
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

// Probed records a probe's outcome: ok if the gateway accepted the
// connection.
func (r *Reach) Probed(address string, ok bool) {
	delete(r.probing, address)
	if ok {
		r.reached[address] = true
	}
}

// Lost records that the connection to a gateway broke (or could not be
// made): it is probed again before the next heartbeat to it.
func (r *Reach) Lost(address string) {
	delete(r.reached, address)
}
