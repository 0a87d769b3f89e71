package config

import (
	"slices"
	"strings"
	"testing"
)

func TestIdentitySourcesValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // "" means valid
	}{
		{"claim", []string{"--identity-jwt-claim", "act.sub"}, ""},
		{"fingerprint identity", []string{"--fingerprint-header", "X-JA4", "--identity", "fingerprint"}, ""},
		{"composed identity", []string{"--fingerprint-header", "x-ja4", "--identity", "address+fingerprint"}, ""},
		{"empty claim part", []string{"--identity-jwt-claim", "act..sub"}, "--identity-jwt-claim (FLOWLOCK_IDENTITY_JWT_CLAIM): \"act..sub\""},
		{"deep claim", []string{"--identity-jwt-claim", "a.b.c.d.e.f.g.h.i"}, "at most 8"},
		{"no payload key", []string{"--identity-jwt-claim", "sub", "--identity-jwt-payload-key", ""}, "--identity-jwt-payload-key"},
		{"identity without header", []string{"--identity", "fingerprint"}, "needs --fingerprint-header"},
		{"unknown identity", []string{"--identity", "ip"}, "must be address, fingerprint or address+fingerprint"},
		{"reserved header", []string{"--fingerprint-header", "x-flowlock-ja4"}, "reserved"},
		{"same as identity header", []string{"--fingerprint-header", "x-ja4", "--identity-header", "x-ja4"}, "also --identity-header"},
		{"flag range", []string{"--fingerprint-flag-after", "51"}, "must be 0-50"},
		{"window range", []string{"--fingerprint-window", "10s"}, "must be 1m0s-24h0m0s"},
		{"calm range", []string{"--fingerprint-calm-limit", "0"}, "must be 1-200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args, func(string) string { return "" })
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if c.FingerprintHeader != strings.ToLower(c.FingerprintHeader) {
					t.Errorf("fingerprint header %q not lowercased", c.FingerprintHeader)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	c := Default()
	c.IdentityJWTClaim = "act.sub"
	if got := c.ClaimPath(); !slices.Equal(got, []string{"payload", "act", "sub"}) {
		t.Errorf("ClaimPath = %q", got)
	}
	if Default().ClaimPath() != nil {
		t.Error("a path without a claim")
	}
}
