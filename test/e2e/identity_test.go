package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// envoyCheck is a CheckRequest as Envoy sends it with the deploy/envoy.yaml
// examples on: the verified JWT payload (if sub is set) in metadata_context
// under envoy.filters.http.jwt_authn / payload, and the JA4 fingerprint
// header that Envoy's header_mutation filter set.
func envoyCheck(t *testing.T, ip, sub, ja4 string, at time.Time) *authv3.CheckRequest {
	t.Helper()
	req := checkFrom(ip, "/data")
	req.Attributes.Request.Time = timestamppb.New(at)
	if ja4 != "" {
		req.Attributes.Request.Http.Headers["x-tls-ja4"] = ja4
	}
	if sub != "" {
		payload, err := structpb.NewStruct(map[string]any{"payload": map[string]any{
			"iss": "https://issuer.example.com", "sub": sub, "aud": "api.example.com", "exp": float64(at.Add(time.Hour).Unix()),
		}})
		if err != nil {
			t.Fatal(err)
		}
		req.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"envoy.filters.http.jwt_authn": payload,
		}}
	}
	return req
}

// TestVerifiedIdentityAndFingerprints runs the built binary with
// --identity-jwt-claim and --identity address+fingerprint and speaks to it
// over real gRPC: a metronome whose verified subject hops over 40
// addresses is quarantined as that subject; a client sending the claim as
// a header is not believed; two browsers behind one NAT address are two
// clients; and the fallbacks are counted in /metrics.
func TestVerifiedIdentityAndFingerprints(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the binary (run without -short; CI does)")
	}
	svc := flowlocktest.Start(t, authz(), "--admin-token", adminToken, "--show-identities",
		"--identity-jwt-claim", "sub", "--fingerprint-header", "X-TLS-JA4", "--identity", "address+fingerprint",
		"--clock-skew", "1h")
	authc, health := clients(t, svc)
	waitServing(t, health)
	send := func(req *authv3.CheckRequest) bool {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := authc.Check(ctx, req)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return codes.Code(resp.GetStatus().GetCode()) == codes.OK
	}

	// Request times go back half an hour (within --clock-skew), so a
	// 500 ms metronome takes no real time.
	start := time.Now().Add(-30 * time.Minute)
	denied := 0
	for i := range 40 {
		ip := "198.51.100." + itoa(i+1)
		if !send(envoyCheck(t, ip, "bot-account", "", start.Add(time.Duration(i)*500*time.Millisecond))) {
			denied++
		}
	}
	if denied == 0 {
		t.Fatal("a 500 ms metronome with one verified subject over 40 addresses was never denied")
	}
	if send(envoyCheck(t, "192.0.2.77", "bot-account", "", start.Add(21*time.Second))) {
		t.Error("the quarantined subject got through from a fresh address")
	}
	// Admitted half an hour ago in request time; the explain view reads
	// the wall clock, so it shows the admission, not an active quarantine.
	if code, body := svc.API(t, "GET", "/api/v1/identities/bot-account", "", ""); code != 200 || !strings.Contains(body, `"action":"admitted"`) {
		t.Errorf("explain bot-account = %d %s", code, body)
	}

	// The claim in a header is no claim: the request is scored by its
	// address (and fingerprint), and the missing claim is counted.
	forged := checkFrom("192.0.2.77", "/data")
	forged.Attributes.Request.Http.Headers["sub"] = "bot-account"
	forged.Attributes.Request.Http.Headers["payload"] = `{"sub":"bot-account"}`
	if !send(forged) {
		t.Error("a header naming the quarantined subject got its owner's quarantine")
	}

	// Two browsers behind one NAT address are two identities.
	nat := "203.0.113.50"
	send(envoyCheck(t, nat, "", "t13d1516h2_8daaf6152771_02713d6af862", time.Now()))
	send(envoyCheck(t, nat, "", "t13d1715h2_5b57614c22b0_3d5424432f57", time.Now()))
	_, list := svc.API(t, "GET", "/api/v1/identities?limit=100", "", "")
	if n := strings.Count(list, `"identity":"`+nat+`+fp:`); n != 2 {
		t.Errorf("%d identities for two browsers behind %s:\n%s", n, nat, list)
	}
	if strings.Contains(list, "8daaf6152771") {
		t.Error("a fingerprint value is shown in clear")
	}
	_, fps := svc.API(t, "GET", "/api/v1/fingerprints", "", "")
	if !strings.Contains(fps, `"enabled":true`) {
		t.Errorf("/api/v1/fingerprints = %s", fps)
	}

	_, metrics := svc.API(t, "GET", "/metrics", "", "")
	for _, want := range []string{`flowlock_authz_identity_fallbacks_total{kind="no_jwt_claim"}`, `flowlock_authz_identity_fallbacks_total{kind="no_fingerprint"}`, "flowlock_fingerprint_flagged 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
