package main

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/replay"
	"github.com/flowlock/flowlock/internal/traffic"
	"github.com/flowlock/flowlock/internal/wire"
)

// pathResult is what one path made of a stream: the 1-based request that was
// first denied (0 if none), the highest score and the reason first denied
// for.
type pathResult struct {
	firstDenied int
	maxScore    int
}

// TestServeReplayEvalDecideAlike runs the same streams through the three
// paths that decide (flowlock-sim eval, flowlock-authz replay, and the live
// gRPC Check server over a stack built as serve builds it) and requires the
// same first denial and the same highest score from each. They all build
// their stack with wire.Build; this pins that nothing else differs.
func TestServeReplayEvalDecideAlike(t *testing.T) {
	setup := newSetup()
	for _, name := range []string{"fixed-2s", "human-spa", "uniform-20pct-2s", "human-poller", "scraper", "nat-10"} {
		sc, ok := traffic.Lookup(name)
		if !ok {
			t.Fatalf("no scenario %q", name)
		}
		t.Run(name, func(t *testing.T) {
			const seed, limit = 7, 400
			addr := streamAddr(3, false)
			var reqs []traffic.Request
			st := sc.Stream(seed, setup.start)
			for len(reqs) < limit {
				r, ok := st.Next()
				if !ok {
					break
				}
				reqs = append(reqs, r)
			}

			ev := setup.runStream(sc, seed, addr, nil, limit)
			eval := pathResult{maxScore: int(ev.maxScore)}
			if ev.detected {
				eval.firstDenied = ev.rtd
			}

			cfg := setup.cfg
			cfg.ExcludePaths = sc.ExcludedPaths
			recs := make([]replay.Record, len(reqs))
			for i, r := range reqs {
				recs[i] = replay.Record{TS: r.TS, Addr: addr, Method: r.Method, Path: r.Path}
			}
			res, _, err := replay.Run(context.Background(), recs, cfg)
			if err != nil || len(res) != 1 {
				t.Fatalf("replay: %v, %d results", err, len(res))
			}
			rep := pathResult{firstDenied: res[0].FirstQuarantineRequest, maxScore: res[0].MaxRisk}

			live := checkOverGRPC(t, wire.Build(cfg, wire.Extra{}), cfg.SweepInterval, addr.String(), reqs)

			if eval != rep || eval != live {
				t.Errorf("eval %+v, replay %+v, gRPC Check %+v: want the same", eval, rep, live)
			}
			if sc.Label == traffic.Bot && eval.firstDenied == 0 {
				t.Errorf("the bot was never denied within %d requests: the comparison proves little", limit)
			}
		})
	}
}

// checkOverGRPC sends reqs as Envoy would, with Envoy's request time, to a
// real gRPC Check server over stack, sweeping the stack every sweep of
// virtual time as serve does on its clock.
func checkOverGRPC(t *testing.T, stack *wire.Stack, sweep time.Duration, addr string, reqs []traffic.Request) pathResult {
	t.Helper()
	srv := authz.NewServer(authz.ServerOptions{
		Policy: stack.Policy, Rules: stack.Rules,
		MaxSkew: 100 * 365 * 24 * time.Hour, // believe the stream's virtual request times
	}).NewGRPCServer() // as flowlock-authz serves
	lis := bufconn.Listen(1 << 20)
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)

	var out pathResult
	nextSweep := reqs[0].TS.Add(sweep)
	for i, r := range reqs {
		for !r.TS.Before(nextSweep) {
			stack.Sweep(nextSweep)
			nextSweep = nextSweep.Add(sweep)
		}
		resp, err := client.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
			}}},
			Request: &authv3.AttributeContext_Request{
				Time: timestamppb.New(r.TS),
				Http: &authv3.AttributeContext_HttpRequest{Method: r.Method, Path: r.Path, Headers: map[string]string{":path": r.Path}},
			},
		}})
		if err != nil {
			t.Fatalf("Check %d: %v", i+1, err)
		}
		score := 0
		if ok := resp.GetOkResponse(); ok != nil {
			for _, h := range ok.GetHeaders() {
				if h.GetHeader().GetKey() == "x-flowlock-risk" {
					score, _ = strconv.Atoi(h.GetHeader().GetValue())
				}
			}
		} else {
			score = int(resp.GetDynamicMetadata().GetFields()["flowlock_score"].GetNumberValue())
			if out.firstDenied == 0 {
				out.firstDenied = i + 1
			}
		}
		out.maxScore = max(out.maxScore, score)
	}
	return out
}
