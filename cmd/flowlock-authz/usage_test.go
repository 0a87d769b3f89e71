package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/flowlock/flowlock/internal/config"
)

// TestHelpListsCommands pins that every way of asking for help names the
// subcommands as well as serve's flags.
func TestHelpListsCommands(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"serve", "-h"}} {
		var out, errOut bytes.Buffer
		_ = run(context.Background(), args, func(string) string { return "" }, &out, &errOut)
		text := out.String() + errOut.String()
		for _, want := range []string{"serve ", "replay ", "healthcheck ", "version ", "--trusted-proxies", "--grpc-addr"} {
			if !strings.Contains(text, want) {
				t.Errorf("flowlock-authz %s does not show %q:\n%s", strings.Join(args, " "), want, text)
			}
		}
	}
}

// TestDemoConfigNamesTheToken pins that /api/v1/config says a --demo run
// generated its admin token, instead of "(unset)".
func TestDemoConfigNamesTheToken(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--demo"}, demoTokenNote},
		{[]string{"--demo", "--admin-token", "a-token-of-my-own-0123456789"}, "(set)"},
		{nil, "(unset)"},
	} {
		cfg, err := config.Load(tc.args, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(configView(cfg)())
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		if got := m["admin-token"]; got != tc.want {
			t.Errorf("%v: admin-token = %v, want %q", tc.args, got, tc.want)
		}
	}
}
