package cluster

import (
	"context"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tolerex/tolerex/cluster/certs"
	"github.com/tolerex/tolerex/messages"
)

func TestAllowedTypes(t *testing.T) {
	name := func(m proto.Message) string { return string(proto.MessageName(m)) }
	cases := []struct {
		local, peer certs.Role
		secure      bool
		msg         proto.Message
		want        bool
	}{
		{certs.RoleMember, certs.RoleGateway, true, &messages.StoreBatch{}, true},
		{certs.RoleMember, certs.RoleGateway, true, &messages.PruneBatch{}, true},
		{certs.RoleMember, certs.RoleMember, true, &messages.StoreBatch{}, false},
		{certs.RoleMember, certs.RoleMember, true, &messages.PruneBatch{}, false},
		{certs.RoleMember, certs.RoleGateway, true, &actor.Stop{}, false},
		{certs.RoleGateway, certs.RoleMember, true, &messages.MemberHeartbeat{}, true},
		{certs.RoleGateway, certs.RoleMember, true, &messages.ClientRequest{}, false},
		{certs.RoleGateway, certs.RoleMember, true, &messages.ClientBatch{}, false},
		{certs.RoleMember, certs.RoleGateway, true, &messages.StoreRequest{}, false}, // batches only
		{certs.RoleGateway, certs.RoleMember, true, &messages.StoreBatch{}, false},
		{certs.RoleGateway, certs.RoleGateway, true, &messages.ClientRequest{}, true},
		{certs.RoleGateway, certs.RoleGateway, true, &messages.MemberHeartbeat{}, false},
		{certs.RoleGateway, certs.RoleMember, true, &actor.DeadLetterResponse{}, true},
		// Raft traffic: between gateways only (issue 9, item 1).
		{certs.RoleGateway, certs.RoleGateway, true, &messages.RaftBatch{}, true},
		{certs.RoleGateway, certs.RoleGateway, true, &messages.RaftSnapshotChunk{}, true},
		{certs.RoleGateway, certs.RoleGateway, true, &messages.RaftSnapshotAck{}, true},
		{certs.RoleGateway, certs.RoleMember, true, &messages.RaftBatch{}, false},
		{certs.RoleGateway, certs.RoleMember, true, &messages.RaftSnapshotChunk{}, false},
		{certs.RoleGateway, certs.RoleMember, true, &messages.RaftSnapshotAck{}, false},
		{certs.RoleMember, certs.RoleGateway, true, &messages.RaftBatch{}, false},
		{certs.RoleMember, "", false, &messages.StoreBatch{}, true},
		{certs.RoleMember, "", false, &actor.PoisonPill{}, false},
	}
	for _, c := range cases {
		if got := allowedTypes(c.local, c.peer, c.secure)[name(c.msg)]; got != c.want {
			t.Errorf("%s from %q to %s (secure=%v): allowed=%v, want %v", name(c.msg), c.peer, c.local, c.secure, got, c.want)
		}
	}
}

func TestGuardCheck(t *testing.T) {
	g := &guardedStream{allowed: allowedTypes(certs.RoleMember, certs.RoleGateway, true), peerRole: certs.RoleGateway}
	valid := func() *remote.MessageBatch {
		return &remote.MessageBatch{
			TypeNames: []string{string(proto.MessageName(&messages.StoreBatch{}))},
			Targets:   []*actor.PID{actor.NewPID("127.0.0.1:1", messages.StorageActor)},
			Senders:   []*actor.PID{actor.NewPID("127.0.0.1:2", messages.LeaderActor)},
			Envelopes: []*remote.MessageEnvelope{{TypeId: 0, Target: 0, Sender: 1}},
		}
	}
	if err := g.check(valid()); err != nil {
		t.Fatalf("valid batch refused: %v", err)
	}
	broken := map[string]func(b *remote.MessageBatch){
		"unknown type":    func(b *remote.MessageBatch) { b.TypeNames[0] = "x.Unknown" },
		"type index":      func(b *remote.MessageBatch) { b.Envelopes[0].TypeId = 1 },
		"negative type":   func(b *remote.MessageBatch) { b.Envelopes[0].TypeId = -1 },
		"target index":    func(b *remote.MessageBatch) { b.Envelopes[0].Target = 1 },
		"sender index":    func(b *remote.MessageBatch) { b.Envelopes[0].Sender = 2 },
		"negative sender": func(b *remote.MessageBatch) { b.Envelopes[0].Sender = -1 },
		"json serializer": func(b *remote.MessageBatch) { b.Envelopes[0].SerializerId = 1 },
		"nil target":      func(b *remote.MessageBatch) { b.Targets[0] = nil },
		"system message":  func(b *remote.MessageBatch) { b.TypeNames[0] = string(proto.MessageName(&actor.Stop{})) },
		"heartbeat to a member": func(b *remote.MessageBatch) {
			b.TypeNames[0] = string(proto.MessageName(&messages.MemberHeartbeat{}))
		},
	}
	for name, breakIt := range broken {
		b := valid()
		breakIt(b)
		if err := g.check(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRecoveryInterceptors(t *testing.T) {
	log := zerolog.Nop()
	_, err := recoverUnary(log)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/remote.Remoting/ListProcesses"},
		func(context.Context, any) (any, error) { panic("implement me") })
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("unary panic: %v, want Unimplemented", err)
	}
	err = recoverStream(log)(nil, nil, &grpc.StreamServerInfo{FullMethod: "/remote.Remoting/Receive"},
		func(any, grpc.ServerStream) error { panic("decode of an unknown message type") })
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("stream panic: %v, want InvalidArgument", err)
	}
}
