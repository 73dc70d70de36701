package caddymodule

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/swarmsec/caddy-hardening/internal/testcaddy"
)

// grpcHealth is a gRPC health service whose Check fails with the code a test sets (OK: serving).
type grpcHealth struct {
	healthpb.UnimplementedHealthServer
	code atomic.Uint32
	hits atomic.Int64
}

func (g *grpcHealth) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	g.hits.Add(1)
	if c := grpccodes.Code(g.code.Load()); c != grpccodes.OK {
		return nil, status.Error(c, "the test says "+c.String())
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// TestBreakerJudgesGRPCStatus: a gRPC server answers HTTP 200 whatever happened and says how
// the call went in grpc-status, so a gRPC upstream answering UNAVAILABLE to every call never
// opened the breaker. A call that fails before its first message (every unary error) has
// grpc-status in the response header: the breaker judges it by the HTTP status it stands for
// (UNAVAILABLE 503), against failure_status; the caller's own faults (INVALID_ARGUMENT 400,
// UNIMPLEMENTED 501) are not failures under the default 5xx. While open, a gRPC call gets a
// gRPC answer.
func TestBreakerJudgesGRPCStatus(t *testing.T) {
	svc := &grpcHealth{}
	up := startGRPCHealth(t, svc)

	block, url := grpcBreakerSite(t, "t_grpc", "consecutive_failures 2\nopen_for 1m", "h2c://"+up)
	c := testcaddy.StartCaddy(t, "{\n\tservers {\n\t\tprotocols h1 h2c\n\t}\n}\n"+block)
	conn, err := grpc.NewClient(strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := healthpb.NewHealthClient(conn)
	check := func() grpccodes.Code {
		_, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{})
		return status.Code(err)
	}

	if c := check(); c != grpccodes.OK {
		t.Fatalf("a call through Caddy: %v", c)
	}
	for _, c := range []grpccodes.Code{grpccodes.InvalidArgument, grpccodes.Unimplemented, grpccodes.NotFound} {
		svc.code.Store(uint32(c))
		for range 3 {
			if got := check(); got != c {
				t.Fatalf("the upstream answered %v, the client got %v", c, got)
			}
		}
	}
	if s := breakerStatus(t, "t_grpc"); s.Observed["state"] != "closed" {
		t.Fatalf("the caller's own faults opened the breaker: %+v", s)
	}

	svc.code.Store(uint32(grpccodes.Unavailable))
	check()
	check()
	waitBreakerState(t, "t_grpc", "open")
	// The open breaker answers a gRPC call in gRPC: UNAVAILABLE with its message (a 503 read
	// "unexpected HTTP status code received from server: 503"), Retry-After in the metadata.
	before := svc.hits.Load()
	var md metadata.MD
	_, err = client.Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.Trailer(&md))
	if st := status.Convert(err); st.Code() != grpccodes.Unavailable || st.Message() != openGRPCMessage {
		t.Fatalf("through the open breaker: %v %q", st.Code(), st.Message())
	}
	if ra := md.Get("retry-after"); len(ra) != 1 || ra[0] < "1" || len(ra[0]) > 2 {
		t.Fatalf("Retry-After in the trailers-only answer: %q", ra)
	}
	if svc.hits.Load() != before {
		t.Fatal("the upstream was called through the open breaker")
	}
	// A fallback that writes nothing gets the same answer.
	fbBlock, fbURL := grpcBreakerSite(t, "t_grpc_fb", "consecutive_failures 1\nopen_for 1m\nfallback {\n\theader X-Fallback yes\n}", "127.0.0.1:1")
	if err := c.Load("{\n\tservers {\n\t\tprotocols h1 h2c\n\t}\n}\n" + block + fbBlock); err != nil {
		t.Fatal(err)
	}
	fbConn, err := grpc.NewClient(strings.TrimSuffix(strings.TrimPrefix(fbURL, "http://"), "/"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fbConn.Close() })
	fb := healthpb.NewHealthClient(fbConn)
	_, _ = fb.Check(context.Background(), &healthpb.HealthCheckRequest{}) // the refused dial opens it
	_, err = fb.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if st := status.Convert(err); st.Code() != grpccodes.Unavailable || st.Message() != openGRPCMessage {
		t.Fatalf("through the open breaker's empty fallback: %v %q", st.Code(), st.Message())
	}
	if n := breakerCount(t, "t_grpc", "failure"); n != 2 {
		t.Errorf("%v failures counted, want the 2 UNAVAILABLE", n)
	}
}

// grpcAfterHeader is a gRPC health service that sends its response header before it fails, as a
// server does whose interceptor sends metadata (grpc.SendHeader: a request id), or a stream that
// fails before its first message: grpc-status then comes in the trailers, after the header.
// Watch sends `messages` messages before it fails.
type grpcAfterHeader struct {
	healthpb.UnimplementedHealthServer
	code     atomic.Uint32
	messages atomic.Int32
	hold     atomic.Bool // Watch waits for the client to leave after its messages
	hits     atomic.Int64
}

func (g *grpcAfterHeader) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	g.hits.Add(1)
	if err := grpc.SendHeader(ctx, metadata.Pairs("x-request-id", "42")); err != nil {
		return nil, err
	}
	if c := grpccodes.Code(g.code.Load()); c != grpccodes.OK {
		return nil, status.Error(c, "the test says "+c.String())
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (g *grpcAfterHeader) Watch(_ *healthpb.HealthCheckRequest, s healthpb.Health_WatchServer) error {
	g.hits.Add(1)
	if err := s.SendHeader(metadata.Pairs("x-request-id", "42")); err != nil {
		return err
	}
	for range g.messages.Load() {
		if err := s.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
			return err
		}
	}
	if g.hold.Load() {
		<-s.Context().Done()
		return s.Context().Err()
	}
	return status.Error(grpccodes.Code(g.code.Load()), "the test says so")
}

// TestBreakerJudgesGRPCStatusInTrailers: a gRPC call that fails after its response header (the
// server sent metadata first) carries grpc-status in the trailers, which reverse_proxy copies
// into the header map once the call ends. The breaker settled the outcome at the header, as a
// success, so an upstream answering UNAVAILABLE to every call that way never opened it. A call
// is now settled at its first message or, without one, by the grpc-status of its end; a stream
// that delivered messages before it failed was answered (like an HTTP body cut short). A
// half-open probe is still settled at its header, so that a long stream never holds its slot.
func TestBreakerJudgesGRPCStatusInTrailers(t *testing.T) {
	svc := &grpcAfterHeader{}
	up := startGRPCHealth(t, svc)

	block, url := grpcBreakerSite(t, "t_grpc_trailers", "consecutive_failures 3\nopen_for 1m", "h2c://"+up)
	probeBlock, probeURL := grpcBreakerSite(t, "t_grpc_probe", "consecutive_failures 1\nopen_for 200ms", "h2c://"+up)
	testcaddy.StartCaddy(t, "{\n\tservers {\n\t\tprotocols h1 h2c\n\t}\n}\n"+block+probeBlock)
	dial := func(url string) healthpb.HealthClient {
		conn, err := grpc.NewClient(strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/"),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return healthpb.NewHealthClient(conn)
	}
	client, probeClient := dial(url), dial(probeURL)
	var hdr metadata.MD // the last call's header
	check := func() grpccodes.Code {
		hdr = nil
		_, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
		return status.Code(err)
	}
	watch := func() grpccodes.Code { // the stream's final status
		s, err := client.Watch(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil {
			return status.Code(err)
		}
		for {
			if _, err := s.Recv(); err != nil {
				return status.Code(err)
			}
		}
	}

	// A half-open probe that is a long stream is settled at its header: it does not hold the
	// only probe slot for as long as the stream lasts, even when the server sent its metadata
	// and then nothing (a watch with nothing to report yet).
	svc.code.Store(uint32(grpccodes.Unavailable))
	if _, err := probeClient.Check(context.Background(), &healthpb.HealthCheckRequest{}); status.Code(err) != grpccodes.Unavailable {
		t.Fatalf("the failing call: %v", err)
	}
	waitBreakerState(t, "t_grpc_probe", "open")
	time.Sleep(250 * time.Millisecond) // open_for
	svc.code.Store(uint32(grpccodes.OK))
	svc.hold.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	var probeHdr metadata.MD
	stream, err := probeClient.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		probeHdr, err = stream.Header()
	}
	if err != nil || len(probeHdr.Get("x-request-id")) != 1 {
		t.Fatalf("the probe stream's header: %v %v", probeHdr, err)
	}
	if _, err := probeClient.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("a call while the probe stream runs: %v (the stream holds the probe slot)", err)
	}
	cancel()
	// A client that leaves a call before its first message is not counted.
	excluded := breakerCount(t, "t_grpc_trailers", "excluded")
	ctx, cancel = context.WithCancel(context.Background())
	var hdrMD metadata.MD
	stream, err = client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		hdrMD, err = stream.Header() // the upstream's header went through: the call is pending
	}
	if err != nil || len(hdrMD.Get("x-request-id")) != 1 {
		t.Fatalf("the held stream's header: %v %v", hdrMD, err)
	}
	cancel()
	for deadline := time.Now().Add(5 * time.Second); breakerCount(t, "t_grpc_trailers", "excluded") == excluded; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the cancelled call was not counted as excluded")
		}
	}
	svc.hold.Store(false)

	if c := check(); c != grpccodes.OK {
		t.Fatalf("a call through Caddy: %v", c)
	}
	// The caller's own faults, in the trailers, are not failures.
	svc.code.Store(uint32(grpccodes.InvalidArgument))
	for range 3 {
		if c := check(); c != grpccodes.InvalidArgument || len(hdr.Get("x-request-id")) != 1 {
			t.Fatalf("the client got %v with the header %v, want the upstream's header, then its status", c, hdr)
		}
	}
	// A stream that failed after its first message was answered.
	svc.code.Store(uint32(grpccodes.Unavailable))
	svc.messages.Store(1)
	for range 3 {
		if c := watch(); c != grpccodes.Unavailable {
			t.Fatalf("the stream ended with %v", c)
		}
	}
	if s := breakerStatus(t, "t_grpc_trailers"); s.Observed["state"] != "closed" {
		t.Fatalf("the caller's faults or streams that had answered opened the breaker: %+v", s)
	}
	if n := breakerCount(t, "t_grpc_trailers", "failure"); n != 0 {
		t.Fatalf("%v failures counted, want none yet", n)
	}
	// UNAVAILABLE after the header, with no message: a stream, then unary calls.
	svc.messages.Store(0)
	if c := watch(); c != grpccodes.Unavailable {
		t.Fatalf("the stream ended with %v", c)
	}
	check()
	check()
	waitBreakerState(t, "t_grpc_trailers", "open")
	before := svc.hits.Load()
	if c := check(); c != grpccodes.Unavailable {
		t.Fatalf("through the open breaker: %v", c)
	}
	if svc.hits.Load() != before {
		t.Fatal("the upstream was called through the open breaker")
	}
	if n := breakerCount(t, "t_grpc_trailers", "failure"); n != 3 {
		t.Errorf("%v failures counted, want the 3 UNAVAILABLE without a message", n)
	}
}

// grpcBreakerSite is breakerSite with the request buffered by reverse_proxy (request_buffers).
// Caddy v2.11.9's reverse_proxy races with itself on an h2c upstream: the HTTP/2 transport reads
// the request body (bodyNopCloserIfNotRead.Read writes its count) in one goroutine and closes it
// (Close reads the count) in another when the upstream's answer ends the stream first, which a
// gRPC error answer does. The race detector then fails these tests on Caddy's code, not ours; a
// buffered body is handed to the transport as a plain reader, outside that wrapper. The unary and
// server-streaming calls here send one message, so buffering changes nothing else.
func grpcBreakerSite(t *testing.T, name, settings, addr string) (string, string) {
	block, url := breakerSite(t, name, settings, addr)
	return strings.Replace(block, "\ttransport http {", "\trequest_buffers 64k\n\t\ttransport http {", 1), url
}

// startGRPCHealth serves svc as a gRPC health service on a free loopback port and returns its
// address.
func startGRPCHealth(t *testing.T, svc healthpb.HealthServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, svc)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}
