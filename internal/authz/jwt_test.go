package authz

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
)

// jwtNamespace is where Envoy's jwt_authn filter writes verified payloads.
const jwtNamespace = "envoy.filters.http.jwt_authn"

// withPayload puts a verified JWT payload into req's metadata_context the
// way Envoy's ext_authz filter forwards it: under the jwt_authn namespace,
// keyed by the provider's payload_in_metadata.
func withPayload(t testing.TB, req *authv3.CheckRequest, key string, payload map[string]any) *authv3.CheckRequest {
	t.Helper()
	st, err := structpb.NewStruct(map[string]any{key: payload})
	if err != nil {
		t.Fatal(err)
	}
	req.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{jwtNamespace: st}}
	return req
}

func claimRules(path ...string) ClientRules {
	return ClientRules{ClaimNamespace: jwtNamespace, ClaimPath: path, IPv6Prefix: 64}
}

// TestClaimFromCapturedEnvoyRequest reads the subject from a CheckRequest
// a real Envoy sent after jwt_authn verified the token.
func TestClaimFromCapturedEnvoyRequest(t *testing.T) {
	req := loadFixture(t, "opa-envoy-jwt-authn-verified.json")
	md := req.GetAttributes().GetMetadataContext()
	for _, tc := range []struct {
		path []string
		want string
	}{
		{[]string{"verified_jwt", "sub"}, "alice@domain.com"},
		{[]string{"verified_jwt", "exp"}, "1653086946"}, // a number claim, in decimal
		{[]string{"payload", "sub"}, ""},                // another payload_in_metadata key
		{[]string{"verified_jwt", "act", "sub"}, ""},    // no such nested claim
		{[]string{"verified_jwt"}, ""},                  // the payload itself is no claim
		{nil, ""},
	} {
		if got := claimFromMetadata(md, jwtNamespace, tc.path); got != tc.want {
			t.Errorf("claim %v = %q, want %q", tc.path, got, tc.want)
		}
	}
	if got := claimFromMetadata(md, "other.namespace", []string{"verified_jwt", "sub"}); got != "" {
		t.Errorf("another namespace gave %q", got)
	}
	if got := claimFromMetadata(nil, jwtNamespace, []string{"verified_jwt", "sub"}); got != "" {
		t.Errorf("no metadata_context gave %q", got)
	}

	rules := claimRules("verified_jwt", "sub")
	var in Input
	readRules(req, rules, &in)
	c := rules.ResolveWith(in.Source, in.ForwardedFor, in.IdentityValue, in.Claim, in.Fingerprint)
	if c.ID.Name() != "alice@domain.com" || c.Fallback != FallbackNone || c.Cause != CauseNone {
		t.Errorf("client = %+v, want the verified subject", c)
	}
	if c.Addr != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("Addr = %v: the lists must still see the address", c.Addr)
	}
}

// TestClaimNestedAndTyped covers the dotted path and the value types a
// payload may hold.
func TestClaimNestedAndTyped(t *testing.T) {
	req := withPayload(t, request("203.0.113.7", nil), "payload", map[string]any{
		"sub":  "user-1",
		"act":  map[string]any{"sub": "agent-7"},
		"uid":  float64(42),
		"frac": 1.5,
		"big":  float64(1 << 60),
		"ok":   true,
		"list": []any{"a"},
	})
	md := req.GetAttributes().GetMetadataContext()
	for path, want := range map[string]string{
		"sub": "user-1", "act.sub": "agent-7", "uid": "42",
		"frac": "", "big": "", "ok": "", "list": "", "act": "", "sub.x": "",
	} {
		rules := claimRules(append([]string{"payload"}, splitDots(path)...)...)
		if got := claimFromMetadata(md, jwtNamespace, rules.ClaimPath); got != want {
			t.Errorf("claim %s = %q, want %q", path, got, want)
		}
	}
}

func splitDots(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '.' {
			i++
		}
		out = append(out, s[:i])
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return out
}

// TestClaimNeverFromHeader: a client that sends a header named like the
// claim, or like the metadata, is scored by its address, and the fallback
// is counted.
func TestClaimNeverFromHeader(t *testing.T) {
	rules := claimRules("payload", "sub")
	req := request("203.0.113.7", map[string]string{
		"sub": "victim", "payload": `{"sub":"victim"}`, "x-jwt-sub": "victim", jwtNamespace: "victim",
	})
	var in Input
	readRules(req, rules, &in)
	if in.Claim != "" {
		t.Fatalf("a claim was read from headers: %q", in.Claim)
	}
	c := rules.ResolveWith(in.Source, in.ForwardedFor, in.IdentityValue, in.Claim, in.Fingerprint)
	if c.ID != identity.FromAddr(netip.MustParseAddr("203.0.113.7"), 64) || c.Fallback != FallbackNoClaim || c.Cause != CauseNoClaim {
		t.Errorf("client = %+v, want the address with fallback no_jwt_claim", c)
	}
	if c.Cause.Unscored() || !c.Cause.OnlyWhenEvery() {
		t.Error("a missing claim must be scored, and only a finding when no request has one")
	}
	if p, fix := rules.Explain(c.Cause, c.Addr); p == "" || fix == "" {
		t.Error("no explanation for a missing claim")
	}

	bad := rules.ResolveWith(netip.MustParseAddr("203.0.113.7"), "", "", "line\nbreak", "")
	if bad.Fallback != FallbackBadClaim || bad.Cause != CauseBadClaim || bad.ID.Name() != "" {
		t.Errorf("bad claim: %+v", bad)
	}
	// The claim wins over the identity header: Envoy verified it.
	rules.IdentityHeader = "x-api-key"
	both := rules.ResolveWith(netip.MustParseAddr("203.0.113.7"), "", "key-1", "user-1", "")
	if both.ID.Name() != "user-1" {
		t.Errorf("claim and header: %v, want the claim", both.ID)
	}
	// Without a claim the identity header still identifies, and the
	// missing claim is counted.
	hdr := rules.ResolveWith(netip.MustParseAddr("203.0.113.7"), "", "key-1", "", "")
	if hdr.ID.Name() != "key-1" || hdr.Fallback != FallbackNoClaim {
		t.Errorf("header only: %+v", hdr)
	}
}

// TestCheckQuarantinesTheVerifiedSubject drives a metronome bot whose
// requests come from ever new addresses but carry one verified subject,
// through the real gRPC server: the subject is quarantined, and its next
// request from yet another address is denied.
func TestCheckQuarantinesTheVerifiedSubject(t *testing.T) {
	f := newFixture(t, setup{rules: claimRules("payload", "sub")})
	start := f.now
	admitted := 0
	for i := 1; i <= 40 && admitted == 0; i++ {
		f.now = start.Add(time.Duration(i) * 500 * time.Millisecond)
		ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}).String()
		req := withPayload(t, request(ip, nil), "payload", map[string]any{"sub": "bot-account", "iss": "https://issuer.example"})
		req.Attributes.Request.Time = timestamppb.New(f.now)
		f.check(t, req)
		if f.recs.got[len(f.recs.got)-1].Outcome == Admitted {
			admitted = i
		}
	}
	if admitted == 0 {
		t.Fatal("a 500 ms metronome with one verified subject over 40 addresses was never quarantined")
	}
	id, _ := identity.FromName("bot-account")
	if _, ok := f.q.Check(id, f.now); !ok {
		t.Fatal("the subject is not what was quarantined")
	}
	f.now = f.now.Add(time.Second)
	req := withPayload(t, request("192.0.2.99", nil), "payload", map[string]any{"sub": "bot-account"})
	if resp := f.check(t, req); resp.GetDeniedResponse() == nil {
		t.Error("the quarantined subject got through from a new address")
	}
	// An anonymous request from that address is scored by address, and
	// the fallback is recorded for the metric.
	f.check(t, request("192.0.2.99", nil))
	if rec := f.recs.got[len(f.recs.got)-1]; rec.Fallback != FallbackNoClaim || rec.Outcome != Allowed {
		t.Errorf("anonymous request: outcome %v fallback %v, want allowed with no_jwt_claim", rec.Outcome, rec.Fallback)
	}
}

// BenchmarkCheckIdentitySources is the allow path of a Check as Envoy
// sends it with the JWT and fingerprint examples on, against the same
// Check by address: what reading the claim and hashing the fingerprint
// cost.
func BenchmarkCheckIdentitySources(b *testing.B) {
	for _, tc := range []struct {
		name  string
		rules ClientRules
	}{
		{"address", ClientRules{IPv6Prefix: 64}},
		{"jwt-claim", claimRules("verified_jwt", "sub")},
		{"address+fingerprint", ClientRules{IPv6Prefix: 64, FingerprintHeader: "x-tls-ja4", Compose: ComposeAddressFingerprint}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f := newFixture(b, setup{rules: tc.rules,
				lists: quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil)})
			f.srv.now = time.Now
			req := loadFixture(b, "opa-envoy-jwt-authn-verified.json")
			req.Attributes.Request.Time = nil
			req.Attributes.Request.Http.Headers["x-tls-ja4"] = "t13d1516h2_8daaf6152771_02713d6af862"
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if resp, err := f.srv.Check(ctx, req); err != nil || resp.GetOkResponse() == nil {
					b.Fatalf("Check = %v, %v", resp, err)
				}
			}
		})
	}
}
