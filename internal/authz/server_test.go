package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/risk"
	"github.com/flowlock/flowlock/internal/volume"
)

// fixture is a running Check server over bufconn with its parts exposed.
type fixture struct {
	engine *risk.Engine
	q      *quarantine.List
	policy *Policy
	srv    *Server
	client authv3.AuthorizationClient
	conn   *grpc.ClientConn
	now    time.Time
	recs   *records
}

type records struct{ got []Record }

func (r *records) RecordCheck(rec Record) { r.got = append(r.got, rec) }

type setup struct {
	rules   ClientRules
	mode    Mode
	lists   *quarantine.Lists
	exclude []string
	// standard serves Check with the generated handler and the standard
	// codec; by default the fixture serves it as flowlock-authz does,
	// through the lean codec (NewGRPCServer).
	standard bool
	action   Action
	tarpit   *Tarpit
}

// newFixture starts the real gRPC server on an in-memory listener; the
// clock is fixed so request times from fixtures of years ago are judged
// against it.
func newFixture(t testing.TB, s setup) *fixture {
	t.Helper()
	f := &fixture{
		engine: risk.New(risk.Options{MaxClients: 10000}),
		q:      quarantine.New(quarantine.Options{}),
		now:    time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC),
		recs:   &records{},
	}
	f.policy = NewPolicy(Options{Engine: f.engine, Quarantine: f.q, Lists: s.lists, Mode: s.mode, ExcludePaths: s.exclude, Action: s.action})
	f.srv = NewServer(ServerOptions{Policy: f.policy, Rules: s.rules, MaxSkew: 5 * time.Second, Now: func() time.Time { return f.now }, Recorder: f.recs, Tarpit: s.tarpit})

	var gs *grpc.Server
	if s.standard {
		gs = grpc.NewServer()
		authv3.RegisterAuthorizationServer(gs, f.srv)
	} else {
		gs = f.srv.NewGRPCServer()
	}
	f.conn = bufconnServe(t, gs)
	f.client = authv3.NewAuthorizationClient(f.conn)
	return f
}

// bufconnServe serves gs on an in-memory listener until the test ends and
// returns a client connection to it.
func bufconnServe(t testing.TB, gs *grpc.Server) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (f *fixture) check(t testing.TB, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := f.client.Check(context.Background(), req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

// loadFixture reads a CheckRequest captured from a real Envoy (see
// testdata/envoy/README.md for the sources) with strict protojson.
func loadFixture(t testing.TB, name string) *authv3.CheckRequest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "envoy", name))
	if err != nil {
		t.Fatal(err)
	}
	req := &authv3.CheckRequest{}
	if err := protojson.Unmarshal(b, req); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return req
}

func request(ip string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":method": "GET", ":path": "/data", ":authority": "api"}
	for k, v := range headers {
		h[k] = v
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: h[":path"], Headers: h,
		}},
	}}
	if ip != "" {
		req.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{
			Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: ip}},
		}}
	}
	return req
}

func okHeaders(t testing.TB, resp *authv3.CheckResponse) map[string]string {
	t.Helper()
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK || resp.GetOkResponse() == nil {
		t.Fatalf("want an allow, got %v", resp)
	}
	h := map[string]string{}
	for _, o := range resp.GetOkResponse().GetHeaders() {
		h[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return h
}

func tracked(f *fixture) []string {
	var ids []string
	for _, s := range f.engine.Top(100, f.now) {
		ids = append(ids, s.ID.String())
	}
	return ids
}

// TestCheckEnvoyFixtures runs the CheckRequests captured from Istio,
// kgateway and OPA's fixtures through the real server and checks whom each
// is attributed to under the rules an operator of that setup would use.
func TestCheckEnvoyFixtures(t *testing.T) {
	cluster := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		file     string
		rules    ClientRules
		identity string // "" means no identity
		fallback Fallback
	}{
		// Istio sidecar inbound: no XFF; the pod source is the client.
		{"istio-authz-custom-allowed.json", ClientRules{}, "10.44.0.22", FallbackNone},
		{"istio-authz-custom-denied.json", ClientRules{}, "10.44.0.22", FallbackNone},
		// kgateway through kubectl port-forward: the socket is 127.0.0.1,
		// the client is in XFF. By default the socket counts...
		{"kgateway-extauth-allowed.json", ClientRules{}, "127.0.0.1", FallbackNone},
		// ...and with the port-forward trusted, XFF's client does.
		{"kgateway-extauth-denied.json", ClientRules{TrustedProxies: cluster[:1]}, "10.244.0.7", FallbackNone},
		// OPA's fixture with no source at all: no identity unless XFF is
		// configured.
		{"opa-envoy-plugin-internal-test-allowed.json", ClientRules{}, "", FallbackNoIdentity},
		{"opa-envoy-plugin-internal-test-allowed.json", ClientRules{TrustedProxies: cluster}, "172.17.0.1", FallbackNone},
		// A socket address with no port.
		{"opa-envoy-plugin-protomap-test.json", ClientRules{}, "127.0.0.1", FallbackNone},
	}
	for _, tc := range tests {
		for _, standard := range []bool{false, true} { // both codecs (see NewGRPCServer)
			t.Run(fmt.Sprintf("%s/standard=%v", tc.file, standard), func(t *testing.T) {
				f := newFixture(t, setup{rules: tc.rules, standard: standard})
				resp := f.check(t, loadFixture(t, tc.file))
				h := okHeaders(t, resp)
				if h[riskHeader] == "" {
					t.Errorf("allow lacks %s: %v", riskHeader, h)
				}
				got := tracked(f)
				if tc.identity == "" {
					if len(got) != 0 {
						t.Errorf("tracked %v, want nothing", got)
					}
				} else if len(got) != 1 || got[0] != tc.identity {
					t.Errorf("tracked %v, want [%s]", got, tc.identity)
				}
				if n := len(f.recs.got); n != 1 || f.recs.got[0].Fallback != tc.fallback {
					t.Errorf("records = %+v, want one with fallback %v", f.recs.got, tc.fallback)
				}
				// The fixtures carry request times from years ago: the local
				// clock must be used and the skew counted.
				if ts := loadFixture(t, tc.file).GetAttributes().GetRequest().GetTime(); ts != nil && !f.recs.got[0].TimeSkewed {
					t.Errorf("a request time of %v was not reported as skewed", ts.AsTime())
				}
			})
		}
	}
}

// TestCheckCountsRefusals: every Check a quarantine refuses counts in its
// Hits, which the dashboard shows.
func TestCheckCountsRefusals(t *testing.T) {
	f := newFixture(t, setup{})
	id := identity.FromAddr(netip.MustParseAddr("203.0.113.7"), 64)
	if _, err := f.policy.Ban(id, time.Hour, "manual", f.now); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		f.now = f.now.Add(time.Second)
		if resp := f.check(t, request("203.0.113.7", nil)); resp.GetDeniedResponse() == nil {
			t.Fatalf("banned client allowed: %v", resp)
		}
	}
	if e, ok := f.q.Check(id, f.now); !ok || e.Hits != 4 {
		t.Errorf("after 4 refused checks: %+v, %v; want Hits 4", e, ok)
	}
}

func TestCheckDenyShape(t *testing.T) {
	f := newFixture(t, setup{})
	id := identity.FromAddr(netip.MustParseAddr("203.0.113.7"), 64)
	f.policy.Ban(id, 90*time.Second+300*time.Millisecond, `manual <b>"x"</b>`, f.now)

	resp := f.check(t, request("203.0.113.7", nil))
	if codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied {
		t.Fatalf("status = %v, want PERMISSION_DENIED", resp.GetStatus())
	}
	d := resp.GetDeniedResponse()
	if d.GetStatus().GetCode() != 403 {
		t.Errorf("HTTP status = %v, want 403", d.GetStatus().GetCode())
	}
	h := map[string]string{}
	for _, o := range d.GetHeaders() {
		h[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	if h["retry-after"] != "91" {
		t.Errorf("Retry-After = %q, want 91 (90.3 s rounded up)", h["retry-after"])
	}
	if h["content-type"] != "application/json" {
		t.Errorf("content-type = %q", h["content-type"])
	}
	var body struct {
		Error      string `json:"error"`
		Reason     string `json:"reason"`
		RetryAfter int    `json:"retry_after"`
	}
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		t.Fatalf("body %q: %v", d.GetBody(), err)
	}
	if body.Error != "quarantined" || body.Reason != `manual <b>"x"</b>` || body.RetryAfter != 91 {
		t.Errorf("body = %+v", body)
	}
	if strings.Contains(d.GetBody(), "<b>") {
		t.Errorf("markup not escaped in body %q", d.GetBody())
	}
	md := resp.GetDynamicMetadata().GetFields()
	if md[metaReason].GetStringValue() != `manual <b>"x"</b>` || md[metaDecision].GetStringValue() != "quarantined" || md[metaScore] == nil {
		t.Errorf("dynamic metadata = %v", md)
	}
}

func TestCheckAllowStripsClientHeaders(t *testing.T) {
	f := newFixture(t, setup{})
	req := request("203.0.113.8", map[string]string{"x-flowlock-risk": "0", "x-flowlock-admin": "yes", "x-other": "1"})
	req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "X-Flowlock-Raw", RawValue: []byte("1")}}}
	resp := f.check(t, req)
	ok := resp.GetOkResponse()
	if got := strings.Join(ok.GetHeadersToRemove(), ","); !strings.Contains(got, "x-flowlock-admin") || !strings.Contains(got, "X-Flowlock-Raw") || strings.Contains(got, "x-other") || strings.Contains(got, riskHeader) {
		t.Errorf("headers_to_remove = %q", got)
	}
	for _, o := range ok.GetHeaders() {
		if o.GetHeader().GetKey() == riskHeader && o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("%s must overwrite a client-sent value", riskHeader)
		}
	}
}

// TestCheckBotQuarantined drives a fixed-interval client through the real
// server with Envoy's request time set, until it is denied.
func TestCheckBotQuarantined(t *testing.T) {
	for _, mode := range []Mode{Enforce, Shadow} {
		t.Run(mode.String(), func(t *testing.T) {
			f := newFixture(t, setup{mode: mode})
			start := f.now
			var denyAt int
			for i := 1; i <= 40 && denyAt == 0; i++ {
				f.now = start.Add(time.Duration(i) * 500 * time.Millisecond)
				req := request("198.51.100.20", nil)
				req.Attributes.Request.Time = timestamppb.New(f.now.Add(-time.Millisecond))
				resp := f.check(t, req)
				if rec := f.recs.got[len(f.recs.got)-1]; rec.Outcome == Admitted {
					denyAt = i
					if mode == Enforce && resp.GetDeniedResponse() == nil {
						t.Errorf("admitted but not denied in enforce mode")
					}
					if mode == Shadow && resp.GetOkResponse() == nil {
						t.Errorf("shadow mode denied a request")
					}
				}
			}
			if denyAt == 0 {
				t.Fatal("fixed 500 ms bot never admitted within 40 requests")
			}
			if _, ok := f.q.Check(identity.FromAddr(netip.MustParseAddr("198.51.100.20"), 64), f.now); !ok {
				t.Error("admitted bot is not in the quarantine list (shadow mode must record it too)")
			}
		})
	}
}

func TestCheckListsAndExclusions(t *testing.T) {
	lists := quarantine.NewLists(
		[]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		[]netip.Prefix{netip.MustParsePrefix("198.51.100.66/32")})
	f := newFixture(t, setup{lists: lists, exclude: []string{"/api/poll"}})

	resp := f.check(t, request("198.51.100.66", nil))
	if d := resp.GetDeniedResponse(); d == nil || !strings.Contains(d.GetBody(), `"error":"denied"`) {
		t.Errorf("deny-listed client: %v", resp)
	}
	// An allow-listed bot is scored but never quarantined.
	for i := 1; i <= 60; i++ {
		f.now = f.now.Add(time.Second)
		f.check(t, request("192.0.2.9", nil))
	}
	v, _ := f.engine.Peek(identity.FromAddr(netip.MustParseAddr("192.0.2.9"), 64), f.now)
	if !v.Confirmed || f.q.Len() != 0 {
		t.Errorf("allow-listed bot: verdict %+v, quarantined %d; want confirmed but not quarantined", v, f.q.Len())
	}
	// An allow-listed client cannot be banned by hand, and a quarantine
	// that reaches it anyway (restored from a state file written before it
	// was allowed) is not enforced.
	allowed := identity.FromAddr(netip.MustParseAddr("192.0.2.10"), 64)
	if _, err := f.policy.Ban(allowed, time.Hour, "manual", f.now); !errors.Is(err, ErrAllowListed) {
		t.Errorf("Ban(allow-listed) error = %v, want ErrAllowListed", err)
	}
	f.q.Ban(allowed, f.now, time.Hour, "restored")
	if resp := f.check(t, request("192.0.2.10", nil)); resp.GetOkResponse() == nil {
		t.Errorf("allow-listed client with a quarantine entry denied: %v", resp)
	}
	if e, _ := f.q.Check(allowed, f.now); e.Hits != 0 {
		t.Errorf("an allowed request counted as refused: Hits = %d", e.Hits)
	}
	// Excluded paths are decided but not timed.
	poller := identity.FromAddr(netip.MustParseAddr("203.0.113.50"), 64)
	for i := 0; i < 5; i++ {
		f.now = f.now.Add(30 * time.Second)
		f.check(t, request("203.0.113.50", map[string]string{":path": "/api/poll?since=" + strconv.Itoa(i)}))
	}
	if v, ok := f.engine.Peek(poller, f.now); ok && v.Requests != 0 {
		t.Errorf("excluded path was timed: %+v", v)
	}
}

func TestCheckEmptyRequestIsAllowed(t *testing.T) {
	f := newFixture(t, setup{})
	for _, req := range []*authv3.CheckRequest{{}, {Attributes: &authv3.AttributeContext{}}} {
		okHeaders(t, f.check(t, req))
	}
}

func TestCheckIPv6Grouped(t *testing.T) {
	f := newFixture(t, setup{rules: ClientRules{IPv6Prefix: 64}})
	f.check(t, request("2001:db8:1:2::1", nil))
	f.now = f.now.Add(time.Second)
	f.check(t, request("2001:db8:1:2:ffff::9", nil))
	f.check(t, request("::ffff:203.0.113.9", nil))
	got := strings.Join(tracked(f), " ")
	if !strings.Contains(got, "2001:db8:1:2::/64") || !strings.Contains(got, "203.0.113.9") || len(tracked(f)) != 2 {
		t.Errorf("tracked %q; want the /64 once and the mapped IPv4 as IPv4", got)
	}
}

func TestCheckPanicIsAnErrorNotACrash(t *testing.T) {
	f := newFixture(t, setup{})
	f.policy.observer = (*risk.Engine)(nil) // a bug: Observe on a nil engine panics
	_, err := f.client.Check(context.Background(), request("203.0.113.7", nil))
	if status.Code(err) != codes.Internal {
		t.Fatalf("err = %v, want codes.Internal so Envoy applies failure_mode_allow", err)
	}
	if rec := f.recs.got[len(f.recs.got)-1]; !rec.Failed {
		t.Errorf("failure not recorded: %+v", rec)
	}
}

func TestRequestTime(t *testing.T) {
	local := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		ts         *timestamppb.Timestamp
		want       time.Time
		wantSkewed bool
	}{
		{"absent", nil, local, false},
		{"within skew", timestamppb.New(local.Add(-1500 * time.Millisecond)), local.Add(-1500 * time.Millisecond), false},
		{"too old", timestamppb.New(local.Add(-time.Hour)), local, true},
		{"from the future", timestamppb.New(local.Add(10 * time.Second)), local, true},
		{"invalid", &timestamppb.Timestamp{Seconds: 1, Nanos: -5}, local, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in Input
			readRules(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Time: tc.ts},
			}}, ClientRules{}, &in)
			if got, skewed := requestTime(in.Time, local, 0); !got.Equal(local) || skewed {
				t.Errorf("with --clock-skew 0: %v, %v; want the local clock, not skewed", got, skewed)
			}
			got, skewed := requestTime(in.Time, local, 5*time.Second)
			if !got.Equal(tc.want) || skewed != tc.wantSkewed {
				t.Errorf("requestTime = %v, %v; want %v, %v", got, skewed, tc.want, tc.wantSkewed)
			}
		})
	}
}

func TestExcludedSegments(t *testing.T) {
	p := NewPolicy(Options{Engine: risk.New(risk.Options{}), Quarantine: quarantine.New(quarantine.Options{}),
		ExcludePaths: []string{"/api/poll", "/static/"}})
	for path, want := range map[string]bool{
		"/api/poll": true, "/api/poll/7": true, "/api/poll?x=1": true, "/api/polls": false,
		"/static/app.js": true, "/static": false, "/data": false, "": false,
		"/api/poll/../data": false, "/api/poll/%2e%2e/data": false, "/api/poll/..%2Fdata": false,
		"/api/poll//x": false, "/api/poll/./x": false, `/api/poll\..\data`: false, "api/poll": false,
		"/api/poll/": true,
	} {
		if got := p.excluded(path); got != want {
			t.Errorf("excluded(%q) = %v, want %v", path, got, want)
		}
	}
}

// BenchmarkCheck measures one decision through the real handler (the
// method gRPC calls), for a known client, without the network: "allow" is
// an allow-listed client (timed, scored, never quarantined: the common
// path), "deny" a quarantined one (a bot hammering away).
func BenchmarkCheck(b *testing.B) {
	for _, name := range []string{"allow", "deny"} {
		b.Run(name, func(b *testing.B) {
			// The allow list keeps the hammering client from being
			// quarantined; the deny case has none, since it would
			// overrule the ban.
			var lists *quarantine.Lists
			if name == "allow" {
				lists = quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("10.44.0.0/16")}, nil)
			}
			f := newFixture(b, setup{lists: lists})
			f.srv.now = time.Now
			req := loadFixture(b, "istio-authz-custom-allowed.json")
			req.Attributes.Request.Time = nil
			if name == "deny" {
				if _, err := f.policy.Ban(identity.FromAddr(netip.MustParseAddr("10.44.0.22"), 64), time.Hour, "manual", time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				resp, err := f.srv.Check(ctx, req)
				if err != nil || (resp.GetOkResponse() != nil) != (name == "allow") {
					b.Fatalf("Check = %v, %v", resp, err)
				}
			}
		})
	}
}

// BenchmarkCheckParallel is the allow path from many clients at once.
func BenchmarkCheckParallel(b *testing.B) {
	lists := quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, nil)
	f := newFixture(b, setup{lists: lists})
	f.srv.now = time.Now
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		reqs := make([]*authv3.CheckRequest, 256)
		for i := range reqs {
			reqs[i] = request(netip.AddrFrom4([4]byte{10, byte(i), byte(len(reqs)), 1}).String(), nil)
		}
		i := 0
		for pb.Next() {
			if _, err := f.srv.Check(context.Background(), reqs[i%len(reqs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkCheckGRPC adds real gRPC (marshalling, HTTP/2 framing) over an
// in-memory connection: the cost Envoy sees, less the network.
func BenchmarkCheckGRPC(b *testing.B) {
	lists := quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("10.44.0.0/16")}, nil)
	f := newFixture(b, setup{lists: lists})
	f.srv.now = time.Now
	req := loadFixture(b, "istio-authz-custom-allowed.json")
	req.Attributes.Request.Time = nil
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.client.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCheckAllowDoesNotAllocate pins the allow path of the handler (client
// resolution, timing, scoring, quarantine lookup, response) at 0 allocations
// for a known client; gRPC's own decoding and encoding come on top.
func TestCheckAllowDoesNotAllocate(t *testing.T) {
	lists := quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("10.44.0.0/16")}, nil)
	f := newFixture(t, setup{lists: lists})
	f.srv.rec = nopRecorder{} // the test recorder appends; metrics are pinned in internal/metrics
	req := loadFixture(t, "istio-authz-custom-allowed.json")
	f.srv.Check(context.Background(), req)
	allocs := testing.AllocsPerRun(1000, func() {
		f.now = f.now.Add(time.Second)
		if _, err := f.srv.Check(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("allowed Check allocated %v times, want 0", allocs)
	}
}

// TestCheckRepeatDenyDoesNotAllocate: a quarantined client hammering away
// gets its 403 from denyCache while the answer stays the same (the same
// second of Retry-After, score and reason): no allocation in the handler.
func TestCheckRepeatDenyDoesNotAllocate(t *testing.T) {
	f := newFixture(t, setup{})
	f.srv.rec = nopRecorder{}
	if _, err := f.policy.Ban(identity.FromAddr(netip.MustParseAddr("10.44.0.22"), 64), time.Hour, "manual", f.now); err != nil {
		t.Fatal(err)
	}
	req := loadFixture(t, "istio-authz-custom-allowed.json")
	if resp, _ := f.srv.Check(context.Background(), req); resp.GetDeniedResponse() == nil {
		t.Fatalf("banned client allowed: %v", resp)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := f.srv.Check(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("repeated denied Check allocated %v times, want 0", allocs)
	}
}

// TestDenyCache: the cache answers exactly what denyResponse builds, shares
// a response only between decisions that say the same thing, and is safe
// for concurrent use (run with -race).
func TestDenyCache(t *testing.T) {
	base := Decision{Outcome: Quarantined, Score: 91, Reason: "periodic", RetryAfter: 42}
	first := cachedDenyResponse(base)
	if !proto.Equal(first, denyResponse(base)) {
		t.Fatalf("cached response differs from a built one:\n%v\n%v", first, denyResponse(base))
	}
	if again := cachedDenyResponse(base); again != first {
		t.Error("the same decision built a new response")
	}
	for _, d := range []Decision{
		{Outcome: Quarantined, Score: 91, Reason: "periodic", RetryAfter: 41},
		{Outcome: Quarantined, Score: 92, Reason: "periodic", RetryAfter: 42},
		{Outcome: Quarantined, Score: 91, Reason: "anti_bursty", RetryAfter: 42},
		{Outcome: DenyListed, Score: 91, Reason: "periodic", RetryAfter: 42},
		{Outcome: VolumeLimited, Score: 91, Reason: "volume", RetryAfter: 42},
	} {
		if got := cachedDenyResponse(d); got == first || !proto.Equal(got, denyResponse(d)) {
			t.Errorf("decision %+v: cached %v, want its own %v", d, got, denyResponse(d))
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				d := Decision{Outcome: Quarantined, Score: uint8(i % 101), Reason: "periodic", RetryAfter: g + i%7}
				if got := cachedDenyResponse(d); !proto.Equal(got, denyResponse(d)) {
					t.Errorf("concurrent decision %+v answered %v", d, got)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestDenyCacheHoldsAFlood: a flood of quarantined bots is answered with
// every score over a minute of Retry-After seconds; once each answer is
// built, every one of them is answered from the cache (a cache that
// thrashes rebuilds answers on the deny path, which then costs more than
// the allow path).
func TestDenyCacheHoldsAFlood(t *testing.T) {
	c := newResponseCache[Decision]()
	var flood []Decision
	for retry := 3540; retry <= 3600; retry++ {
		for score := range 101 {
			flood = append(flood, Decision{Outcome: Quarantined, Score: uint8(score), Reason: "periodic", RetryAfter: retry})
		}
	}
	for _, d := range flood {
		c.store(denyKeyOf(d), d)
	}
	for _, d := range flood {
		if got, ok := c.load(denyKeyOf(d)); !ok || got != d {
			t.Fatalf("decision %+v: cached %v (%v), want it kept", d, got, ok)
		}
	}
}

// TestReleaseForgetsBeforeReleasing: a bot hammering away while an operator
// releases it must not be re-admitted from its old rhythm in between.
func TestReleaseForgetsBeforeReleasing(t *testing.T) {
	f := newFixture(t, setup{})
	id := identity.FromAddr(netip.MustParseAddr("198.51.100.30"), 64)
	client := Client{ID: id, Addr: netip.MustParseAddr("198.51.100.30")}
	now := f.now
	for i := 0; i < 40; i++ {
		now = now.Add(500 * time.Millisecond)
		f.policy.Decide(Request{Client: client, Path: "/data", Now: now})
	}
	if _, ok := f.q.Check(id, now); !ok {
		t.Fatal("bot not quarantined")
	}
	if !f.policy.Release(id, now) {
		t.Fatal("release failed")
	}
	now = now.Add(500 * time.Millisecond)
	if d := f.policy.Decide(Request{Client: client, Path: "/data", Now: now}); d.Outcome != Allowed {
		t.Errorf("first request after release = %v, want allowed", d.Outcome)
	}
}

func TestAdmitCountedOnce(t *testing.T) {
	f := newFixture(t, setup{})
	id := identity.FromAddr(netip.MustParseAddr("198.51.100.31"), 64)
	client := Client{ID: id, Addr: netip.MustParseAddr("198.51.100.31")}
	now := f.now
	admitted := 0
	for i := 0; i < 60; i++ {
		now = now.Add(500 * time.Millisecond)
		if f.policy.Decide(Request{Client: client, Path: "/data", Now: now}).Outcome == Admitted {
			admitted++
		}
	}
	if admitted != 1 {
		t.Errorf("admitted %d times, want once", admitted)
	}
}

func TestCheckVolumeLimit(t *testing.T) {
	f := newFixture(t, setup{})
	f.policy.volume = volume.New(volume.Options{Rate: 1, Burst: 2})
	var got []int
	for range 5 {
		resp := f.check(t, request("203.0.113.77", nil))
		got = append(got, int(resp.GetDeniedResponse().GetStatus().GetCode()))
	}
	// 1 + burst allowed at once, then 429 with Retry-After; not a quarantine.
	if want := []int{0, 0, 0, 429, 429}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("statuses = %v, want %v", got, want)
	}
	resp := f.check(t, request("203.0.113.77", nil))
	if b := resp.GetDeniedResponse().GetBody(); !strings.Contains(b, `"error":"rate_limited"`) || !strings.Contains(b, `"retry_after":1`) {
		t.Errorf("body = %s", b)
	}
	if f.q.Len() != 0 {
		t.Error("the volume limit quarantined a client")
	}
	f.now = f.now.Add(time.Second)
	okHeaders(t, f.check(t, request("203.0.113.77", nil)))
}

// TestBanPartlyAllowedGroup: a ban on an IPv6 /64 of which the allow list
// covers only a part is accepted (it still denies the rest); one the allow
// list covers whole is refused.
func TestBanPartlyAllowedGroup(t *testing.T) {
	lists := quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("2001:db8:1:2::/96"), netip.MustParsePrefix("2001:db8:9::/48")}, nil)
	f := newFixture(t, setup{lists: lists})
	if _, err := f.policy.Ban(identity.FromAddr(netip.MustParseAddr("2001:db8:1:2:ffff::9"), 64), time.Hour, "manual", f.now); err != nil {
		t.Errorf("ban on a partly allowed /64: %v", err)
	}
	if _, err := f.policy.Ban(identity.FromAddr(netip.MustParseAddr("2001:db8:9:5::1"), 64), time.Hour, "manual", f.now); !errors.Is(err, ErrAllowListed) {
		t.Errorf("ban on a /64 inside an allowed /48: %v, want ErrAllowListed", err)
	}
}
