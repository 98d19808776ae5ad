package cluster

import (
	"context"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tolerex/tolerex/cluster/certs"
	"github.com/tolerex/tolerex/messages"
)

// allowedTypes is the allowlist of message types a peer with role
// peerRole may send to a node with role local. Everything else, including
// protoactor's own system messages (Stop, PoisonPill, Watch) and types the
// receiver does not know, closes the peer's connection. Without TLS there
// is no role to check: any Tolerex message is allowed, unknown types still
// are not.
func allowedTypes(local, peerRole certs.Role, secure bool) map[string]bool {
	// deadLetter is what protoactor sends back to the sender of a request
	// whose target does not exist.
	deadLetter := &actor.DeadLetterResponse{}
	fromGatewayToMember := []proto.Message{
		&messages.StoreBatch{}, &messages.ReadBatch{}, &messages.PruneBatch{},
		&messages.TreeRequest{}, &messages.HeartbeatAck{}, deadLetter,
	}
	fromMemberToGateway := []proto.Message{
		&messages.MemberHeartbeat{}, &messages.StoreAckBatch{}, &messages.ReadReplyBatch{},
		&messages.TreeReply{}, deadLetter,
	}
	fromGatewayToGateway := []proto.Message{
		&messages.ClientBatch{}, &messages.ClientReplyBatch{}, &messages.ClientRequest{}, &messages.ClientReply{},
		&messages.TreeRequest{}, &messages.TreeReply{}, deadLetter,
		// The Raft group and client requests forwarded to its leader:
		// gateways only.
		&messages.RaftBatch{}, &messages.RaftSnapshotChunk{}, &messages.RaftSnapshotAck{}, &messages.GatewayRemovedNotice{},
		&messages.ForwardBatch{}, &messages.ForwardReplyBatch{},
		&messages.GatewayChange{}, &messages.GatewayChangeReply{},
		&messages.RaftStatusRequest{}, &messages.RaftStatus{},
		&messages.MemberLivenessRequest{}, &messages.MemberLiveness{},
	}
	var allowed []proto.Message
	switch {
	case !secure:
		allowed = append(append(append(allowed, fromGatewayToMember...), fromMemberToGateway...), fromGatewayToGateway...)
	case local == certs.RoleMember && peerRole == certs.RoleGateway:
		allowed = fromGatewayToMember
	case local == certs.RoleGateway && peerRole == certs.RoleMember:
		allowed = fromMemberToGateway
	case local == certs.RoleGateway && peerRole == certs.RoleGateway:
		allowed = fromGatewayToGateway
	}
	// Members do not talk to members: nothing is allowed between them.
	set := make(map[string]bool, len(allowed))
	for _, m := range allowed {
		set[string(proto.MessageName(m))] = true
	}
	return set
}

// guardMetrics counts refused peer streams.
type guardMetrics struct {
	refused *prometheus.CounterVec
}

func newGuardMetrics(reg prometheus.Registerer) *guardMetrics {
	m := &guardMetrics{refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tolerex_remote_refused_total",
		Help: "Peer connections closed because they sent a message their role may not send, or a malformed batch, by peer role.",
	}, []string{"peer_role"})}
	reg.MustRegister(m.refused)
	return m
}

// guardStream checks every message batch a peer sends on protoactor's
// Receive stream before protoactor decodes it: only the message types the
// peer's role may send to this node, serialized by the protobuf
// serializer, with every index in range. A violation closes the stream
// with PermissionDenied.
func guardStream(local certs.Role, secure bool, log zerolog.Logger, m *guardMetrics) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		peerRole, peerAddr := peerIdentity(ss.Context())
		if secure && peerRole == "" {
			return status.Error(codes.PermissionDenied, "no role in the peer certificate")
		}
		g := &guardedStream{
			ServerStream: ss,
			allowed:      allowedTypes(local, peerRole, secure),
			peerRole:     peerRole,
			log:          log.With().Str("peer", peerAddr).Str("peer_role", string(peerRole)).Logger(),
			metrics:      m,
		}
		return handler(srv, g)
	}
}

func peerIdentity(ctx context.Context) (certs.Role, string) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", ""
	}
	addr := ""
	if p.Addr != nil {
		addr = p.Addr.String()
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", addr
	}
	role, err := certs.PeerRole(info.State)
	if err != nil {
		return "", addr
	}
	return role, addr
}

type guardedStream struct {
	grpc.ServerStream
	allowed  map[string]bool
	peerRole certs.Role
	log      zerolog.Logger
	metrics  *guardMetrics
}

func (g *guardedStream) RecvMsg(m any) error {
	if err := g.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	msg, ok := m.(*remote.RemoteMessage)
	if !ok {
		return nil
	}
	if batch := msg.GetMessageBatch(); batch != nil {
		if err := g.check(batch); err != nil {
			g.log.Warn().Err(err).Msg("peer sent a message it may not send; connection closed")
			if g.metrics != nil {
				g.metrics.refused.WithLabelValues(string(g.peerRole)).Inc()
			}
			return status.Error(codes.PermissionDenied, err.Error())
		}
	}
	return nil
}

// protoSerializer is protoactor's serializer id for protobuf messages.
const protoSerializer = 0

func (g *guardedStream) check(b *remote.MessageBatch) error {
	for _, name := range b.GetTypeNames() {
		if !g.allowed[name] {
			return fmt.Errorf("message type %q not allowed from a %q peer", name, g.peerRole)
		}
	}
	for i, env := range b.GetEnvelopes() {
		switch {
		case env.GetSerializerId() != protoSerializer:
			return fmt.Errorf("envelope %d: serializer %d", i, env.GetSerializerId())
		case env.GetTypeId() < 0 || int(env.GetTypeId()) >= len(b.GetTypeNames()):
			return fmt.Errorf("envelope %d: type index %d out of range", i, env.GetTypeId())
		case env.GetTarget() < 0 || int(env.GetTarget()) >= len(b.GetTargets()):
			return fmt.Errorf("envelope %d: target index %d out of range", i, env.GetTarget())
		case env.GetSender() < 0 || int(env.GetSender()) > len(b.GetSenders()):
			return fmt.Errorf("envelope %d: sender index %d out of range", i, env.GetSender())
		}
	}
	for i, target := range b.GetTargets() {
		if target == nil {
			return fmt.Errorf("target %d is empty", i)
		}
	}
	return nil
}
