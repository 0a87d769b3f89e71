package authz

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlock/flowlock/internal/fleet"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
)

// leanCall runs one Check through the lean handler and codec as gRPC
// would, on the request bytes in buf, and returns the encoded answer.
func leanCall(s *Server, buf mem.BufferSlice) (mem.BufferSlice, error) {
	dec := func(v any) error { return checkCodec{}.Unmarshal(buf, v) }
	a, err := leanCheck(s, context.Background(), dec, nil)
	if err != nil {
		return nil, err
	}
	return checkCodec{}.Marshal(a)
}

// pathFixture is a fixture on which the Istio fixture's client
// (10.44.0.22) takes the allow path (allow-listed: timed and scored, never
// quarantined) or the deny path (banned), by the fixture's clock or, with
// realClock, by the real one (for benchmarks). Checks are not recorded.
func pathFixture(t testing.TB, path string, s setup, realClock bool) *fixture {
	t.Helper()
	if path == "allow" {
		s.lists = quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("10.44.0.0/16")}, nil)
	}
	f := newFixture(t, s)
	f.srv.rec = nopRecorder{}
	now := f.now
	if realClock {
		f.srv.now = time.Now
		now = time.Now()
	}
	if path == "deny" {
		if _, err := f.policy.Ban(identity.FromAddr(netip.MustParseAddr("10.44.0.22"), 64), time.Hour, "manual", now); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// istioRequest is the captured Istio request marshalled, without its
// request time (so that the server's clock is used).
func istioRequest(t testing.TB) []byte {
	t.Helper()
	req := loadFixture(t, "istio-authz-custom-allowed.json")
	req.Attributes.Request.Time = nil
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLeanCheckDoesNotAllocate pins the lean path (codec, pooled call,
// wire decode, decision, encoded answer) at 0 allocations, on allow and on
// a repeated deny; gRPC's own transport comes on top.
func TestLeanCheckDoesNotAllocate(t *testing.T) {
	for _, name := range []string{"allow", "deny", "allow-fingerprint", "deny-fingerprint"} {
		t.Run(name, func(t *testing.T) {
			rules := ClientRules{IdentityHeader: "x-user-id"}
			if path, ok := strings.CutSuffix(name, "-fingerprint"); ok {
				// The capture's x-b3-traceid stands in for a JA4 header.
				name, rules = path, ClientRules{FingerprintHeader: "x-b3-traceid"}
			}
			f := pathFixture(t, name, setup{rules: rules}, false)
			buf := mem.BufferSlice{mem.SliceBuffer(istioRequest(t))}
			out, err := leanCall(f.srv, buf)
			if err != nil {
				t.Fatal(err)
			}
			var resp authv3.CheckResponse
			if err := proto.Unmarshal(out.Materialize(), &resp); err != nil || (resp.GetOkResponse() != nil) != (name == "allow") {
				t.Fatalf("answer %v, %v", &resp, err)
			}
			allocs := testing.AllocsPerRun(1000, func() {
				if name == "allow" {
					f.now = f.now.Add(time.Second)
				}
				if _, err := leanCall(f.srv, buf); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("lean %s Check allocated %v times, want 0", name, allocs)
			}
		})
	}
}

// TestLeanAnswersAreTheGeneratedOnes: the bytes sent are the generated
// responses marshalled, for every score and for denies, so the two codecs
// answer alike.
func TestLeanAnswersAreTheGeneratedOnes(t *testing.T) {
	for s := range 101 {
		var got authv3.CheckResponse
		if err := proto.Unmarshal(allowByScore[s].wire.Materialize(), &got); err != nil || !proto.Equal(&got, allowResponse(uint8(s), nil)) {
			t.Fatalf("score %d: sent %v, %v", s, &got, err)
		}
	}
	d := Decision{Outcome: VolumeLimited, Score: 40, Reason: "volume", RetryAfter: 3}
	var got authv3.CheckResponse
	if err := proto.Unmarshal(cachedDenyAnswer(d).wire.Materialize(), &got); err != nil || !proto.Equal(&got, denyResponse(d)) {
		t.Fatalf("deny sent %v, %v", &got, err)
	}
}

// TestLeanCheckMalformed: a request protobuf cannot decode is answered
// with codes.InvalidArgument (the proxy applies its failure mode) and
// counted as Failed, over real gRPC.
func TestLeanCheckMalformed(t *testing.T) {
	f := newFixture(t, setup{})
	bad := wHTTP(wStr(fieldHTTPPath, "/\xff"))
	buf := mem.BufferSlice{mem.SliceBuffer(bad)}
	if _, err := leanCall(f.srv, buf); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("malformed request: %v, want InvalidArgument", err)
	}
	if rec := f.recs.got[len(f.recs.got)-1]; !rec.Failed {
		t.Errorf("not recorded as failed: %+v", rec)
	}
	// Over the wire, through the client's own codec, with a request the
	// client marshals but the server cannot read: an empty path field
	// followed by a truncated one.
	var req authv3.CheckRequest
	req.ProtoReflect().SetUnknown(slices.Concat(wHTTP(), []byte{0x0a, 0x05, 0x22}))
	if _, err := f.client.Check(context.Background(), &req); status.Code(err) != codes.InvalidArgument {
		t.Errorf("malformed request over gRPC: %v, want InvalidArgument", err)
	}
}

// TestLeanServerKeepsOtherServices: health checking uses the standard
// codec on the same server, and a generated Check handler registered on a
// lean server still works (the codec falls back for its types).
func TestLeanServerKeepsOtherServices(t *testing.T) {
	f := newFixture(t, setup{})
	gs := f.srv.NewGRPCServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	if _, ok := gs.GetServiceInfo()["envoy.service.auth.v3.Authorization"]; !ok {
		t.Fatal("the lean server does not list the Authorization service")
	}
	conn := bufconnServe(t, gs)
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health over the lean server: %v, %v", resp, err)
	}
	ok, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), request("203.0.113.5", nil))
	if err != nil || ok.GetOkResponse() == nil {
		t.Fatalf("Check: %v, %v", ok, err)
	}
	var a any = &authv3.CheckRequest{}
	if err := (checkCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wHTTP(wStr(fieldHTTPPath, "/x")))}, a); err != nil || a.(*authv3.CheckRequest).GetAttributes().GetRequest().GetHttp().GetPath() != "/x" {
		t.Errorf("generated CheckRequest through checkCodec: %v, %v", a, err)
	}
}

// TestWireInputIsNotKept: a named client's Checks go through the lean path
// until it is quarantined, and every request buffer is overwritten as soon
// as its Check ends (as gRPC reuses it). What Flow Lock keeps, the timing
// record and the quarantine entry, still names the client: whatever
// outlives a Check was copied from the request.
func TestWireInputIsNotKept(t *testing.T) {
	f := newFixture(t, setup{rules: ClientRules{IdentityHeader: "x-user-id"}})
	start := f.now
	admitted := false
	for i := 1; i <= 40 && !admitted; i++ {
		f.now = start.Add(time.Duration(i) * 500 * time.Millisecond)
		req := request("198.51.100.20", map[string]string{"x-user-id": "bot-77"})
		req.Attributes.Request.Time = timestamppb.New(f.now)
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leanCall(f.srv, mem.BufferSlice{mem.SliceBuffer(b)}); err != nil {
			t.Fatal(err)
		}
		clear(b) // the Check is over: gRPC may reuse the buffer
		for i := range b {
			b[i] = 'X'
		}
		admitted = f.recs.got[len(f.recs.got)-1].Outcome == Admitted
	}
	if !admitted {
		t.Fatal("the fixed 500 ms client was never admitted")
	}
	id, _ := identity.FromName("bot-77")
	if _, ok := f.q.Check(id, f.now); !ok {
		t.Errorf("the quarantine does not hold bot-77 after its requests were overwritten; tracked %q", tracked(f))
	}
	if got := tracked(f); len(got) != 1 || got[0] != "bot-77" {
		t.Errorf("tracked %q after the requests were overwritten, want [bot-77]", got)
	}
}

// BenchmarkDecodeCheckRequest compares reading Input from a captured Envoy
// request with the generated decoder (proto.Unmarshal, then readInput) and
// with the wire decoder.
func BenchmarkDecodeCheckRequest(b *testing.B) {
	raw := istioRequest(b)
	want := newHeaderTable(&ClientRules{IdentityHeader: "x-user-id"})
	b.Run("decoder=generated", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		cpu := processCPU()
		for b.Loop() {
			var req authv3.CheckRequest
			if err := proto.Unmarshal(raw, &req); err != nil {
				b.Fatal(err)
			}
			var in Input
			readInput(&req, want, nil, &in)
		}
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	})
	b.Run("decoder=wire", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		var d wireDecoder
		cpu := processCPU()
		for b.Loop() {
			if err := d.decode(raw, want, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
	})
}

// BenchmarkCheckGRPCCodec is a whole Check through a real grpc.Server over
// an in-memory connection, with the standard codec and the generated
// handler, and with the lean codec, on the allow path (an allow-listed
// client) and the deny path (a banned one). The client sends the request
// bytes marshalled once and does not decode the answer (rawCodec), so that
// what differs is the server's work; gRPC's own costs on both sides are in
// every case alike.
func BenchmarkCheckGRPCCodec(b *testing.B) {
	for _, codec := range []string{"standard", "lean"} {
		for _, path := range []string{"allow", "deny"} {
			b.Run("codec="+codec+"/path="+path, func(b *testing.B) {
				f := pathFixture(b, path, setup{standard: codec == "standard"}, true)
				ctx := context.Background()
				req := loadFixture(b, "istio-authz-custom-allowed.json")
				req.Attributes.Request.Time = nil
				if resp, err := f.client.Check(ctx, req); err != nil || (resp.GetOkResponse() != nil) != (path == "allow") {
					b.Fatalf("Check = %v, %v", resp, err)
				}
				out := mem.BufferSlice{mem.SliceBuffer(istioRequest(b))}
				var answered int
				b.ReportAllocs()
				cpu := processCPU()
				for b.Loop() {
					if err := f.conn.Invoke(ctx, authv3.Authorization_Check_FullMethodName, &out, &answered, grpc.ForceCodecV2(rawCodec{})); err != nil || answered == 0 {
						b.Fatalf("Check = %d bytes, %v", answered, err)
					}
				}
				b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// processCPU is the CPU time the process has used so far, in nanoseconds:
// on a shared machine, CPU per Check is steadier than wall time per Check.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawCodec is a client codec for benchmarks: it sends a request already
// marshalled (*mem.BufferSlice) and only counts the answer's bytes (*int).
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) { return *v.(*mem.BufferSlice), nil }

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*int) = data.Len()
	return nil
}

// BenchmarkLeanCheck is BenchmarkCheck on the lean path, without the
// transport: codec, pooled call, wire decode, decision, encoded answer.
func BenchmarkLeanCheck(b *testing.B) {
	for _, path := range []string{"allow", "deny"} {
		b.Run("path="+path, func(b *testing.B) {
			f := pathFixture(b, path, setup{}, true)
			buf := mem.BufferSlice{mem.SliceBuffer(istioRequest(b))}
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				if _, err := leanCall(f.srv, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// TestLeanCheckInterceptor: a unary interceptor on the lean server sees
// the Check's method and wraps the lean handler.
func TestLeanCheckInterceptor(t *testing.T) {
	f := newFixture(t, setup{})
	var seen []string
	gs := f.srv.NewGRPCServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		seen = append(seen, info.FullMethod)
		return h(ctx, req)
	}))
	resp, err := authv3.NewAuthorizationClient(bufconnServe(t, gs)).Check(context.Background(), request("203.0.113.6", nil))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("Check through an interceptor: %v, %v", resp, err)
	}
	if len(seen) != 1 || seen[0] != authv3.Authorization_Check_FullMethodName {
		t.Errorf("interceptor saw %q", seen)
	}
}

// TestLeanOverlongNameIsNotCopied: an identity header longer than any
// name identity.FromName accepts is refused (the client is scored by its
// address), so the lean path does not copy it: an attacker's overlong
// header costs no allocation a Check.
func TestLeanOverlongNameIsNotCopied(t *testing.T) {
	f := pathFixture(t, "allow", setup{rules: ClientRules{IdentityHeader: "x-user-id"}}, false)
	b, err := proto.Marshal(request("10.44.0.22", map[string]string{"x-user-id": strings.Repeat("u", 4096)}))
	if err != nil {
		t.Fatal(err)
	}
	buf := mem.BufferSlice{mem.SliceBuffer(b)}
	if _, err := leanCall(f.srv, buf); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		f.now = f.now.Add(time.Second)
		if _, err := leanCall(f.srv, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a Check with an overlong identity header allocated %v times, want 0", allocs)
	}
}

// TestInternCoversWhatIsKept: intern returns a string longer than
// internMaxLen as it is, uncopied, which is safe only while nothing keeps
// such a string: the fleet detector hashes a longer path before it queues
// the note, and a name longer than identity.MaxNameLen is refused.
func TestInternCoversWhatIsKept(t *testing.T) {
	if internMaxLen < fleet.MaxPathName || internMaxLen < identity.MaxNameLen {
		t.Fatalf("internMaxLen %d is below what is kept: fleet.MaxPathName %d, identity.MaxNameLen %d",
			internMaxLen, fleet.MaxPathName, identity.MaxNameLen)
	}
}

// TestLeanLongPathIsNotCopied: a path longer than anything keeps costs a
// Check no allocation, and a refused name (here one that prints blank)
// takes no place in the memo.
func TestLeanLongPathIsNotCopied(t *testing.T) {
	f := pathFixture(t, "allow", setup{rules: ClientRules{IdentityHeader: "x-user-id"}}, false)
	b, err := proto.Marshal(request("10.44.0.23", map[string]string{
		":path": "/search?q=" + strings.Repeat("x", 300), "x-user-id": "user\u00a0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	buf := mem.BufferSlice{mem.SliceBuffer(b)}
	if _, err := leanCall(f.srv, buf); err != nil {
		t.Fatal(err)
	}
	kept := f.srv.names.memo.Len()
	allocs := testing.AllocsPerRun(1000, func() {
		f.now = f.now.Add(time.Second)
		if _, err := leanCall(f.srv, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a Check with a 310-byte path allocated %v times, want 0", allocs)
	}
	if n := f.srv.names.memo.Len(); n != kept {
		t.Errorf("the memo grew from %d to %d strings on repeats", kept, n)
	}
	if got := f.srv.names.internName("user\u00a0"); f.srv.names.memo.Len() != kept || got != "user\u00a0" {
		t.Errorf("a name FromName refuses was kept in the memo")
	}
}
