package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tolerex/tolerex/actors/consensus"
	"github.com/tolerex/tolerex/cluster/certs"
	"github.com/tolerex/tolerex/messages"
)

// peerConn is a hand-made protoactor remote connection to a node, with
// the certificate of the given role: a peer that speaks the wire protocol
// but not necessarily the rules.
type peerConn struct {
	t      *testing.T
	conn   *grpc.ClientConn
	client remote.RemotingClient
}

func dialPeer(t *testing.T, tlsDir string, role certs.Role, nodeAddr string) *peerConn {
	t.Helper()
	node, err := certs.LoadNode(tlsDir, role)
	if err != nil {
		t.Fatal(err)
	}
	return dialPeerTLS(t, node.Client, nodeAddr)
}

func dialPeerTLS(t *testing.T, cfg *tls.Config, nodeAddr string) *peerConn {
	t.Helper()
	conn, err := grpc.Dial(nodeAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &peerConn{t: t, conn: conn, client: remote.NewRemotingClient(conn)}
}

// sendBatch opens a Receive stream, introduces itself like a protoactor
// node, sends one batch and returns the error that ends the stream (nil
// if the node keeps it open for a second).
func (p *peerConn) sendBatch(batch *remote.MessageBatch) error {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := p.client.Receive(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_ConnectRequest{
		ConnectRequest: &remote.ConnectRequest{ConnectionType: &remote.ConnectRequest_ServerConnection{
			ServerConnection: &remote.ServerConnection{SystemId: "hostile", Address: "127.0.0.1:1"},
		}},
	}}); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if err := stream.Send(&remote.RemoteMessage{MessageType: &remote.RemoteMessage_MessageBatch{MessageBatch: batch}}); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		_, err := stream.Recv()
		done <- err
	}()
	select {
	case err := <-done:
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	case <-time.After(time.Second):
		return nil
	}
}

// batchOf wraps one message for target on node.
func batchOf(t *testing.T, node, target, typeName string, msg proto.Message) *remote.MessageBatch {
	t.Helper()
	var data []byte
	if msg != nil {
		var err error
		if data, err = proto.Marshal(msg); err != nil {
			t.Fatal(err)
		}
		if typeName == "" {
			typeName = string(proto.MessageName(msg))
		}
	}
	return &remote.MessageBatch{
		TypeNames: []string{typeName},
		Targets:   []*actor.PID{actor.NewPID(node, target)},
		Envelopes: []*remote.MessageEnvelope{{TypeId: 0, Target: 0, MessageData: data}},
	}
}

func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("%s: stream ended with %v, want PermissionDenied", what, err)
	}
}

// TestHostilePeers talks to the nodes of a running cluster over
// protoactor's wire protocol with valid certificates, doing what no
// legitimate peer does: messages of unknown types, protoactor's
// unimplemented RPCs, system messages, and messages its role may not
// send. Each is refused, and the cluster keeps serving throughout.
func TestHostilePeers(t *testing.T) {
	c := NewCluster(t, bin, Options{Members: 2, Tolerance: 2})
	c.DumpLogsOnFailure(t)
	c.Start(t)
	cl := c.Dial(t)
	if err := cl.Set(1, []byte("precious")); err != nil {
		t.Fatal(err)
	}
	member := c.Members[0]
	var before memberInfo
	member.GetJSON(t, "/api/cluster", &before)

	stillServing := func(step string) {
		t.Helper()
		v, found, err := cl.Get(1)
		if err != nil || !found || string(v) != "precious" {
			t.Fatalf("after %s: GET 1 = %q found=%v err=%v", step, v, found, err)
		}
		if err := cl.Set(2, []byte(step)); err != nil {
			t.Fatalf("after %s: SET: %v", step, err)
		}
		c.WaitLive(t, 2, 5*time.Second)
	}

	asGateway := dialPeer(t, c.TLSDir, certs.RoleGateway, member.NodeAddr)
	asMember := dialPeer(t, c.TLSDir, certs.RoleMember, member.NodeAddr)
	memberToGateway := dialPeer(t, c.TLSDir, certs.RoleMember, c.Gateway.NodeAddr)

	t.Run("UnknownMessageType", func(t *testing.T) {
		err := asGateway.sendBatch(batchOf(t, member.NodeAddr, messages.StorageActor, "evil.DoesNotExist", &messages.PruneBatch{}))
		wantDenied(t, "unknown type", err)
		stillServing("an unknown message type")
	})

	t.Run("UnimplementedRPCs", func(t *testing.T) {
		for _, node := range []*Process{member, c.Gateway} {
			p := dialPeer(t, c.TLSDir, certs.RoleGateway, node.NodeAddr)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := p.client.ListProcesses(ctx, &remote.ListProcessesRequest{})
			if status.Code(err) != codes.Unimplemented {
				t.Errorf("ListProcesses on %s: %v, want Unimplemented", node.Name, err)
			}
			_, err = p.client.GetProcessDiagnostics(ctx, &remote.GetProcessDiagnosticsRequest{})
			if status.Code(err) != codes.Unimplemented {
				t.Errorf("GetProcessDiagnostics on %s: %v, want Unimplemented", node.Name, err)
			}
			cancel()
		}
		stillServing("ListProcesses and GetProcessDiagnostics")
	})

	t.Run("SystemMessages", func(t *testing.T) {
		err := asGateway.sendBatch(batchOf(t, member.NodeAddr, messages.StorageActor, "", &actor.Stop{}))
		wantDenied(t, "actor.Stop to member/storage", err)
		err = asGateway.sendBatch(batchOf(t, member.NodeAddr, messages.MemberActor, "", &actor.PoisonPill{}))
		wantDenied(t, "PoisonPill to member", err)
		stillServing("system messages")
	})

	t.Run("MalformedBatch", func(t *testing.T) {
		b := batchOf(t, member.NodeAddr, messages.StorageActor, "", &messages.PruneBatch{Requests: []*messages.PruneRequest{{Id: 1}}})
		b.Envelopes[0].TypeId = 7
		wantDenied(t, "type index out of range", asGateway.sendBatch(b))
		b = batchOf(t, member.NodeAddr, messages.StorageActor, "", &messages.PruneBatch{Requests: []*messages.PruneRequest{{Id: 1}}})
		b.Envelopes[0].Target = -1
		wantDenied(t, "negative target index", asGateway.sendBatch(b))
		b = batchOf(t, member.NodeAddr, messages.StorageActor, "", &messages.PruneBatch{Requests: []*messages.PruneRequest{{Id: 1}}})
		b.Envelopes[0].SerializerId = 9
		wantDenied(t, "unknown serializer", asGateway.sendBatch(b))
		stillServing("malformed batches")
	})

	t.Run("MemberCannotActAsGateway", func(t *testing.T) {
		// A member certificate asking another member to drop every
		// version of id 1, or to store a copy, is refused.
		err := asMember.sendBatch(batchOf(t, member.NodeAddr, messages.StorageActor, "", &messages.PruneBatch{Requests: []*messages.PruneRequest{{Id: 1, Version: 1}}}))
		wantDenied(t, "PruneRequest from a member certificate", err)
		err = asMember.sendBatch(batchOf(t, member.NodeAddr, messages.StorageActor, "", &messages.StoreBatch{Requests: []*messages.StoreRequest{{Id: 777, Version: 1, Payload: []byte("forged")}}}))
		wantDenied(t, "StoreRequest from a member certificate", err)
		// A member certificate sending a client request to the leader.
		err = memberToGateway.sendBatch(batchOf(t, c.Gateway.NodeAddr, messages.LeaderActor, "", &messages.ClientBatch{Requests: []*messages.ClientRequest{{Op: messages.Op_OP_DEL, Id: 1}}}))
		wantDenied(t, "ClientRequest from a member certificate", err)
		// A member certificate sending the gateway a Raft message of a far
		// later term: taken, it would depose the gateway's leadership.
		var raftBefore, raftAfter consensus.Status
		c.Gateway.GetJSON(t, "/api/raft", &raftBefore)
		forged, err := proto.Marshal(&raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(),
			From: new(uint64(99)), To: new(raftBefore.ID), Term: new(raftBefore.Term + 1000)})
		if err != nil {
			t.Fatal(err)
		}
		err = memberToGateway.sendBatch(batchOf(t, c.Gateway.NodeAddr, messages.ConsensusActor, "", &messages.RaftBatch{Messages: [][]byte{forged}}))
		wantDenied(t, "RaftBatch from a member certificate", err)
		c.Gateway.GetJSON(t, "/api/raft", &raftAfter)
		if raftAfter.Term != raftBefore.Term || raftAfter.State != "leader" {
			t.Fatalf("after a Raft message from a member certificate: %s at term %d, was %s at term %d",
				raftAfter.State, raftAfter.Term, raftBefore.State, raftBefore.Term)
		}
		var after memberInfo
		member.GetJSON(t, "/api/cluster", &after)
		if after.Messages < before.Messages {
			t.Fatalf("member lost messages: %d before, %d after", before.Messages, after.Messages)
		}
		stillServing("a member certificate acting as a gateway")
	})

	t.Run("GatewayCertificateIsAllowed", func(t *testing.T) {
		// Control: the same kind of batch with a gateway certificate is
		// accepted, so the refusals above are about the role.
		// Let earlier prunes settle, so the count moves only by the control.
		var st memberInfo
		for prev := uint64(1 << 63); ; prev = st.Messages {
			time.Sleep(300 * time.Millisecond)
			member.GetJSON(t, "/api/cluster", &st)
			if st.Messages == prev {
				break
			}
		}
		err := asGateway.sendBatch(batchOf(t, member.NodeAddr, messages.StorageActor, "", &messages.StoreBatch{Requests: []*messages.StoreRequest{{Id: 888, Version: 1, Payload: []byte("control")}}}))
		if err != nil {
			t.Fatalf("StoreRequest with a gateway certificate: %v", err)
		}
		Eventually(t, 5*time.Second, "the control store to land", func() (bool, string) {
			var now memberInfo
			member.GetJSON(t, "/api/cluster", &now)
			return now.Messages == st.Messages+1, fmt.Sprintf("%d -> %d messages", st.Messages, now.Messages)
		})
	})

	for _, p := range append([]*Process{c.Gateway}, c.Members...) {
		if exited, err := p.Exited(); exited {
			t.Fatalf("%s exited: %v", p.Name, err)
		}
	}
}
