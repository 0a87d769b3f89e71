package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestWarnings(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		environ []string
		edit    func(*Config)
		want    []string // each must appear in one warning
		wantN   int
	}{
		{name: "defaults say nothing", environ: []string{"HOME=/root", "FLOWLOCK_MODE=enforce", "FLOWLOCK_CONFIG="}},
		{name: "token on the command line", args: []string{"--admin-token", "x"},
			want: []string{"--admin-token on the command line is visible", "--admin-token-file"}, wantN: 1},
		{name: "token with equals sign", args: []string{"-admin-token=x"}, want: []string{"process list"}, wantN: 1},
		{name: "token file is fine", args: []string{"--admin-token-file", "/run/secrets/t"}},
		{name: "after -- nothing is a flag", args: []string{"--", "--admin-token=x"}},
		{name: "misspelled env", environ: []string{"FLOWLOCK_TRUSTED_PROXY=10.0.0.0/8", "FLOWLOCK_ADMIN_TOKNE=s3cr3t"},
			want: []string{"FLOWLOCK_TRUSTED_PROXY is not a flowlock-authz setting and is ignored (did you mean FLOWLOCK_TRUSTED_PROXIES?)",
				"FLOWLOCK_ADMIN_TOKNE is not a flowlock-authz setting and is ignored (did you mean FLOWLOCK_ADMIN_TOKEN?)"}, wantN: 2},
		{name: "unknown env without a near name", environ: []string{"FLOWLOCK_SOMETHING_ELSE=1"},
			want: []string{"FLOWLOCK_SOMETHING_ELSE is not a flowlock-authz setting"}, wantN: 1},
		{name: "wide ranges", edit: func(c *Config) {
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("64.0.0.0/2"), netip.MustParsePrefix("2000::/3"), netip.MustParsePrefix("2001:db8::/32")}
		}, want: []string{"--trusted-proxies 64.0.0.0/2 is a very wide range", "--trusted-proxies 2000::/3 is a very wide range"}, wantN: 2},
		{name: "identity header", edit: func(c *Config) { c.IdentityHeader = "x-api-key" },
			want: []string{"--identity-header x-api-key is believed as it arrives", "after verifying"}, wantN: 1},
		{name: "honeypot needs the proxy's route", edit: func(c *Config) { c.QuarantineAction = "honeypot" },
			want: []string{"the proxy must route that header", "or they reach the API", "Unsupported, use deny or tarpit there: Istio", "Caddy and Traefik"}, wantN: 1},
		{name: "tarpit needs nothing more", edit: func(c *Config) { c.QuarantineAction = "tarpit" }},
		{name: "an action in shadow mode", edit: func(c *Config) { c.QuarantineAction = "tarpit"; c.Mode = ModeShadow },
			want: []string{"--quarantine-action tarpit has no effect in shadow mode"}, wantN: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			if tc.edit != nil {
				tc.edit(&c)
			}
			got := Warnings(c, tc.args, tc.environ)
			if len(got) != tc.wantN {
				t.Errorf("Warnings = %d lines, want %d:\n%s", len(got), tc.wantN, strings.Join(got, "\n"))
			}
			all := strings.Join(got, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("Warnings:\n%s\nwant one to contain %q", all, w)
				}
			}
			if strings.Contains(all, "s3cr3t") {
				t.Errorf("Warnings show a value: %s", all)
			}
		})
	}
}
