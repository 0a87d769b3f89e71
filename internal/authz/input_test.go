package authz

import (
	"net/netip"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// TestReadInputFromEnvoy reads a CheckRequest captured from a real Envoy
// (Istio's CUSTOM action) and checks every Input field against it.
func TestReadInputFromEnvoy(t *testing.T) {
	req := loadFixture(t, "istio-authz-custom-allowed.json")
	var in Input
	readInput(req, newHeaderTable("user-agent"), &in)
	want := Input{
		Source:        netip.MustParseAddr("10.44.0.22"),
		SourcePort:    52184,
		Path:          "/headers",
		Method:        "GET",
		Host:          "httpbin.foo:8000",
		Time:          time.Date(2021, 1, 8, 3, 25, 0, 925912000, time.UTC),
		IdentityValue: "curl/7.74.0-DEV",
		UserAgent:     "curl/7.74.0-DEV",
	}
	if in.Source != want.Source || in.SourcePort != want.SourcePort || in.Path != want.Path ||
		in.Method != want.Method || in.Host != want.Host || !in.Time.Equal(want.Time) ||
		in.IdentityValue != want.IdentityValue || in.UserAgent != want.UserAgent ||
		in.ForwardedFor != "" || len(in.Strip) != 0 {
		t.Errorf("readInput =\n%+v\nwant\n%+v", in, want)
	}
}

// TestReadInputStripsClientFlowlockHeaders: client-sent x-flowlock-*
// headers, in either header encoding, are listed for removal, except the
// risk header the answer overwrites anyway.
func TestReadInputStripsClientFlowlockHeaders(t *testing.T) {
	req := request("203.0.113.7", map[string]string{"x-flowlock-route": "admin", riskHeader: "0", "x-other": "1"})
	var in Input
	readInput(req, newHeaderTable(""), &in)
	if len(in.Strip) != 1 || in.Strip[0] != "x-flowlock-route" {
		t.Errorf("Strip = %q, want [x-flowlock-route]", in.Strip)
	}
	if in.IdentityValue != "" {
		t.Errorf("IdentityValue = %q with no identity header configured", in.IdentityValue)
	}
	var empty authv3.CheckRequest
	in = Input{}
	readInput(&empty, newHeaderTable("x-user"), &in)
	if in.Source.IsValid() || in.SourcePort != 0 || in.Path != "" || in.Method != "" || in.Host != "" ||
		!in.Time.IsZero() || in.ForwardedFor != "" || in.IdentityValue != "" || in.UserAgent != "" || in.Strip != nil {
		t.Errorf("an empty CheckRequest read as %+v", in)
	}
}
