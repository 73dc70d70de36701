package caddymodule

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"

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
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, svc)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	block, url := breakerSite(t, "t_grpc", "consecutive_failures 2\nopen_for 1m", "h2c://"+lis.Addr().String())
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
	fbBlock, fbURL := breakerSite(t, "t_grpc_fb", "consecutive_failures 1\nopen_for 1m\nfallback {\n\theader X-Fallback yes\n}", "127.0.0.1:1")
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
