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
// UNIMPLEMENTED 501) are not failures under the default 5xx.
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
	testcaddy.StartCaddy(t, "{\n\tservers {\n\t\tprotocols h1 h2c\n\t}\n}\n"+block)
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
	before := svc.hits.Load()
	if c := check(); c != grpccodes.Unavailable { // Caddy's 503 is UNAVAILABLE to a gRPC client
		t.Fatalf("through the open breaker: %v", c)
	}
	if svc.hits.Load() != before {
		t.Fatal("the upstream was called through the open breaker")
	}
	if n := breakerCount(t, "t_grpc", "failure"); n != 2 {
		t.Errorf("%v failures counted, want the 2 UNAVAILABLE", n)
	}
}
