// Package cluster bootstraps a Tolerex node: the actor system with its
// logging and metrics bridged into zerolog and Prometheus, protoactor's
// remote layer with mutual TLS and guarded gRPC servers, and the node's
// admin HTTP server (health, readiness, metrics, pprof, APIs).
package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/tolerex/tolerex/actors/tree"
	"github.com/tolerex/tolerex/cluster/certs"
	"github.com/tolerex/tolerex/cluster/probe"
)

// NodeOptions configures StartNode.
type NodeOptions struct {
	// Role is the node's role; with TLS it selects the certificate pair.
	Role certs.Role
	// NodeAddress is host:port for the remote layer; other nodes reach this
	// one there (it is also the advertised address). Port 0 picks one.
	NodeAddress string
	// TLSDir holds the cluster CA and the role's pair (see certs.Generate).
	TLSDir string
	// Insecure runs the remote layer in plaintext; TLSDir is then ignored.
	Insecure bool
	// MaxMessageBytes is the largest client message; remote limits are
	// derived from it.
	MaxMessageBytes int
	// ProtoactorMetrics bridges protoactor's own OpenTelemetry actor
	// metrics into Registry. They cost a few microseconds per message
	// (protoactor builds an attribute set for every message it delivers).
	ProtoactorMetrics bool
	Logger            zerolog.Logger
	Registry          *prometheus.Registry
}

// Remote-layer tuning. A batch holds at most endpointBatch messages, so the
// largest gRPC message is about endpointBatch times the largest payload.
const (
	endpointBatch = 128
	// Actor mailboxes run on a pool that grows to this many goroutines
	// (more run on goroutines of their own while all are busy), up to
	// dispatchThroughput messages at a time, protoactor's default.
	dispatchWorkers    = 256
	dispatchThroughput = 300
	endpointQueue      = 1024
	keepaliveTime      = 10 * time.Second
	keepaliveTimeout   = 5 * time.Second
)

// Node is a started actor system with remote.
type Node struct {
	System   *actor.ActorSystem
	Remote   *remote.Remote
	Tree     *tree.Registry
	Logger   zerolog.Logger
	Registry *prometheus.Registry
	// TLS is nil when the node runs insecure.
	TLS *certs.NodeTLS
}

// StartNode starts the actor system and its remote server.
func StartNode(opts NodeOptions) (*Node, error) {
	host, port, err := splitNodeAddress(opts.NodeAddress)
	if err != nil {
		return nil, err
	}
	var nodeTLS *certs.NodeTLS
	if !opts.Insecure {
		if opts.TLSDir == "" {
			return nil, fmt.Errorf("no --tls-dir given; create one with `tolerex certs --dir DIR`, or run with --insecure")
		}
		if nodeTLS, err = certs.LoadNode(opts.TLSDir, opts.Role); err != nil {
			return nil, err
		}
	}
	systemOpts := []actor.ConfigOption{
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return slog.New(newSlogBridge(opts.Logger))
		}),
		actor.WithDeadLetterThrottleCount(3),
		actor.WithDeadLetterThrottleInterval(10 * time.Second),
		actor.WithDeadLetterRequestLogging(false),
	}
	if opts.ProtoactorMetrics {
		provider, err := meterProvider(opts.Registry)
		if err != nil {
			return nil, err
		}
		systemOpts = append(systemOpts, actor.WithMetricProviders(provider))
	}
	system := actor.NewActorSystem(systemOpts...)
	cfg := remote.Configure(host, port,
		remote.WithServerOptions(serverOptions(nodeTLS, opts, newGuardMetrics(opts.Registry))...),
		remote.WithDialOptions(dialOptions(nodeTLS, opts)...),
		remote.WithEndpointWriterBatchSize(endpointBatch),
		// The queue grows when it must; protoactor's default preallocates
		// a million slots (16 MB) for every peer, again on every reconnect.
		remote.WithEndpointWriterQueueSize(endpointQueue),
		remote.WithEndpointManagerQueueSize(endpointQueue),
	)
	// One connection attempt per endpoint: protoactor leaks the gRPC
	// connection of every failed attempt but the last, and sleeps two
	// seconds between attempts inside the endpoint writer.
	cfg.MaxRetryCount = 1
	r := remote.NewRemote(system, cfg)
	if err := startRemote(r); err != nil {
		return nil, fmt.Errorf("start remote on %s: %w", opts.NodeAddress, err)
	}
	reg := tree.NewRegistry(tree.NewDispatcher(dispatchWorkers, dispatchThroughput))
	opts.Registry.MustRegister(tree.NewCollector(reg))
	return &Node{System: system, Remote: r, Tree: reg, Logger: opts.Logger, Registry: opts.Registry, TLS: nodeTLS}, nil
}

// startRemote starts the remote server, turning its panics (a port in use)
// into an error.
func startRemote(r *remote.Remote) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	r.Start()
	return nil
}

// Address is the node's remote address.
func (n *Node) Address() string { return n.System.Address() }

// GatewayProbe is how this node checks that a gateway takes a connection
// from it before handing the remote layer anything for it: the remote
// layer's mutual-TLS handshake with a node whose certificate is a
// gateway's, or its plaintext HTTP/2 connection when the node runs
// insecure. Members probe the gateways they heartbeat to and gateways
// their Raft peers; nothing probes a member.
func (n *Node) GatewayProbe() probe.Func {
	if n.TLS == nil {
		return probe.Plaintext
	}
	return probe.TLS(n.TLS.Client, certs.RoleGateway)
}

// remoteStopLimit bounds Stop. protoactor's graceful stop of the remote
// layer waits (up to 10 s of its own) for every connection to close, and
// for connection attempts under way; a peer that is paused or cut off
// closes none, so a gateway stopped then took 10 s or more to exit
// (measured: 10.02 s with one member paused; more than 15 s in a fault run
// that also had it dialing a paused member).
const remoteStopLimit = 2 * time.Second

// Stop shuts the remote layer down, waiting at most remoteStopLimit for
// it. The node's actors have stopped by then, so nothing is left to send;
// a remote layer still stopping at the limit is left to the process's
// exit.
func (n *Node) Stop() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Remote.Shutdown(true)
		n.System.Shutdown()
	}()
	select {
	case <-done:
	case <-time.After(remoteStopLimit):
		n.Logger.Warn().Dur("waited", remoteStopLimit).
			Msg("the remote layer did not stop in time (a peer that does not answer holds a connection open); stopping without waiting for it")
	}
}

func serverOptions(nodeTLS *certs.NodeTLS, opts NodeOptions, guard *guardMetrics) []grpc.ServerOption {
	creds := insecure.NewCredentials()
	if nodeTLS != nil {
		creds = credentials.NewTLS(nodeTLS.Server)
	}
	return []grpc.ServerOption{
		grpc.Creds(creds),
		grpc.MaxRecvMsgSize(maxRemoteMessage(opts.MaxMessageBytes)),
		grpc.ChainUnaryInterceptor(recoverUnary(opts.Logger)),
		grpc.ChainStreamInterceptor(recoverStream(opts.Logger), guardStream(opts.Role, nodeTLS != nil, opts.Logger, guard)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveTime / 2, PermitWithoutStream: true}),
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
	}
}

func dialOptions(nodeTLS *certs.NodeTLS, opts NodeOptions) []grpc.DialOption {
	creds := insecure.NewCredentials()
	if nodeTLS != nil {
		creds = credentials.NewTLS(nodeTLS.Client)
	}
	limit := maxRemoteMessage(opts.MaxMessageBytes)
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(limit), grpc.MaxCallSendMsgSize(limit)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}),
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
	}
}

// Fixed HTTP/2 flow-control windows. Left unset, gRPC estimates the
// bandwidth-delay product by answering data with PING frames: at low load
// nearly every batch then costs an extra frame each way, and on loopback
// each frame is a system call that wakes the other process. Set, they turn
// the estimator off; 4 MiB per stream and 8 MiB per connection keep a full
// endpoint batch of large messages in flight.
const (
	streamWindow = 4 << 20
	connWindow   = 8 << 20
)

// maxRemoteMessage is the gRPC message limit: a full endpoint batch of the
// largest messages, plus framing.
func maxRemoteMessage(maxMessage int) int {
	if maxMessage <= 0 {
		maxMessage = 1 << 20
	}
	return endpointBatch*(maxMessage+256) + 1<<20
}

// recoverUnary keeps a panicking unary handler from killing the process:
// protoactor leaves ListProcesses and GetProcessDiagnostics as panics.
func recoverUnary(log zerolog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Warn().Str("method", info.FullMethod).Interface("panic", p).Msg("remote call panicked; refused")
				err = status.Errorf(codes.Unimplemented, "%s is not available", info.FullMethod)
			}
		}()
		return handler(ctx, req)
	}
}

// recoverStream keeps a panicking stream handler from killing the process:
// protoactor's endpoint reader panics on a message of an unknown type.
func recoverStream(log zerolog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Warn().Str("method", info.FullMethod).Interface("panic", p).Bytes("stack", debug.Stack()).Msg("remote stream panicked; connection closed")
				err = status.Errorf(codes.InvalidArgument, "malformed remote message")
			}
		}()
		return handler(srv, ss)
	}
}

// receiveBuckets returns the upper bounds, in seconds, of the buckets of
// protoactor's message handling histogram: 1 µs to 1 s.
func receiveBuckets() []float64 {
	return []float64{1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1}
}

// meterProvider bridges protoactor's OpenTelemetry actor metrics into the
// node's Prometheus registry. protoactor reads the global meter provider,
// so this sets it: one registry per process.
func meterProvider(reg *prometheus.Registry) (metric.MeterProvider, error) {
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo(), otelprom.WithoutUnits())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter for actor metrics: %w", err)
	}
	// protoactor records handling times in seconds into a histogram with
	// OpenTelemetry's default boundaries (0, 5, 10, ... 10000), made for
	// milliseconds: every message would land in the first bucket.
	receiveView := sdkmetric.NewView(
		sdkmetric.Instrument{Name: "protoactor_actor_message_receive_duration_seconds"},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: receiveBuckets()}},
	)
	provider := withoutMailboxCallbacks{sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter), sdkmetric.WithView(receiveView))}
	otel.SetMeterProvider(provider)
	return provider, nil
}

// withoutMailboxCallbacks drops protoactor's per-actor mailbox-length
// callbacks. protoactor registers one for every actor it spawns and never
// unregisters it, which keeps every stopped actor (each client session) in
// memory and reports stale values; mailbox depth comes from actors/tree
// instead.
type withoutMailboxCallbacks struct{ metric.MeterProvider }

func (p withoutMailboxCallbacks) Meter(name string, opts ...metric.MeterOption) metric.Meter {
	return meterWithoutCallbacks{p.MeterProvider.Meter(name, opts...)}
}

type meterWithoutCallbacks struct{ metric.Meter }

func (meterWithoutCallbacks) RegisterCallback(metric.Callback, ...metric.Observable) (metric.Registration, error) {
	return noRegistration{}, nil
}

type noRegistration struct{ metric.Registration }

func (noRegistration) Unregister() error { return nil }
