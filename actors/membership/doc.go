// Package membership keeps track of the members. On a gateway, the
// membership actor takes member heartbeats: while its gateway's leader is
// active it decides which members are alive (Liveness, a pure core) and
// tells the leader; otherwise it redirects members to the gateway that
// leads. On a member, Homing decides which gateway to heartbeat to.
// Registrations are not decided here: they go through the leader's Raft
// log.
package membership
