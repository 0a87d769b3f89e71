package proxy

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// recipes are the deploy files whose comments show an attack to try
// through the proxy.
var recipes = map[string]string{
	"nginx":   "nginx/nginx.conf",
	"caddy":   "caddy/Caddyfile",
	"haproxy": "haproxy/haproxy.cfg",
	"traefik": "traefik/dynamic.yml",
}

// recipeTarget is the proxy URL the recipes' attack commands name.
const recipeTarget = "http://127.0.0.1:8000"

// recipeAttack returns the flowlock-sim arguments of the attack a recipe's
// comment shows (the line "bin/flowlock-sim http ..."), with the target
// replaced by base.
func recipeAttack(t *testing.T, file, base string) []string {
	t.Helper()
	b, err := os.ReadFile(deployFile(file))
	if err != nil {
		t.Fatal(err)
	}
	lines := regexp.MustCompile(`(?m)^#\s+bin/flowlock-sim (http .*)$`).FindAllStringSubmatch(string(b), -1)
	if len(lines) != 1 {
		t.Fatalf("deploy/%s shows %d flowlock-sim attack commands, want one", file, len(lines))
	}
	args := strings.Fields(lines[0][1])
	found := false
	for i, a := range args {
		if a == recipeTarget {
			args[i], found = base, true
		}
	}
	if !found || !strings.Contains(lines[0][1], "--source-ip 127.0.0.2") {
		t.Fatalf("deploy/%s: attack %q: want --target %s and --source-ip 127.0.0.2", file, lines[0][1], recipeTarget)
	}
	return args
}

// deniedLine is a flowlock-sim line for a request that got Flow Lock's
// deny at the attacker's end: 403, Retry-After and the JSON body's reason.
var deniedLine = regexp.MustCompile(`(?m)^\s*[0-9.]+s (\S+)\s+\S+\s+GET\s+\S+\s+DENIED 403 retry-after=[0-9]+ reason=\w+`)

// TestRecipeAttackCaught runs the attack each recipe shows, through the
// proxy started from that recipe, and checks that Flow Lock catches the
// bot at its own address: the bot receives the 403 with Retry-After and
// the JSON body, and the quarantine lists 127.0.0.2, not the proxy.
// The run is 5 times faster than the recipe's (scores are scale-free).
func TestRecipeAttackCaught(t *testing.T) {
	endToEnd(t)
	t.Run("traefik", func(t *testing.T) {
		recipeAttack(t, recipes["traefik"], recipeTarget) // shown, not run: Traefik is not packaged here
	})
	for _, px := range proxies {
		t.Run(px.name, func(t *testing.T) {
			bin := tool(t, px.bin)
			fl := startFlowlock(t, "--forward-auth-addr", "127.0.0.1:0", "--trusted-proxies", "127.0.0.1/32")
			base := px.start(t, bin, fl.ForwardAuthAddr, newUpstream(t).addr())
			args := append(recipeAttack(t, recipes[px.name], base), "--speed", "5", "--duration", "4s")
			out, code := runTool(t, "", simBin(), args...)
			denied := deniedLine.FindAllStringSubmatch(out, -1)
			if code != 0 || len(denied) == 0 {
				t.Fatalf("flowlock-sim %v: exit %d, never denied with 403, Retry-After and a JSON reason:\n%s", args, code, out)
			}
			if denied[0][1] != "127.0.0.2" {
				t.Errorf("denied line from %s, want 127.0.0.2", denied[0][1])
			}
			q := api(t, fl, "/api/v1/quarantine")
			if !strings.Contains(q, `"127.0.0.2"`) || strings.Contains(q, `"127.0.0.1"`) {
				t.Errorf("quarantine = %s; want the bot's address 127.0.0.2 only", q)
			}
		})
	}
}

// TestCaddyTrustedProxies: Caddy rewrites X-Forwarded-For, so a client
// naming itself there is its sender (here 127.0.0.1), whatever it claims,
// unless the sender is listed in FLOWLOCK_CADDY_TRUSTED_PROXIES, as a load
// balancer in front of Caddy would be: then the client it names is
// scored, and caught.
func TestCaddyTrustedProxies(t *testing.T) {
	endToEnd(t)
	bin := tool(t, "caddy")
	for _, tc := range []struct {
		trusted string
		client  string
		caught  bool
	}{
		{"", "198.51.100.10", false},
		{"127.0.0.1/32", "198.51.100.9", true},
	} {
		t.Run("trusted="+tc.trusted, func(t *testing.T) {
			fl := startFlowlock(t, "--forward-auth-addr", "127.0.0.1:0", "--trusted-proxies", "127.0.0.1/32")
			base := startCaddyTrusting(t, bin, fl.ForwardAuthAddr, newUpstream(t).addr(), tc.trusted)
			// No --source-ip: the simulator connects from 127.0.0.1 and
			// names its client in X-Forwarded-For.
			out, code := runTool(t, "", simBin(), "http", "--target", base, "--scenario", "fixed-0.5s",
				"--first-addr", tc.client, "--speed", "5", "--duration", "4s")
			if code != 0 {
				t.Fatalf("flowlock-sim: exit %d\n%s", code, out)
			}
			q := api(t, fl, "/api/v1/quarantine")
			if got := strings.Contains(q, `"`+tc.client+`"`); got != tc.caught {
				t.Errorf("quarantine = %s; want %s in it: %v", q, tc.client, tc.caught)
			}
			// Untrusted, whether the sender itself is scored is Flow Lock's
			// business (--trusted-proxies); only the forged name must not count.
			if tc.caught && len(deniedLine.FindAllString(out, -1)) == 0 {
				t.Errorf("bot never denied:\n%s", out)
			}
			if ids := api(t, fl, "/api/v1/identities"); !tc.caught && strings.Contains(ids, `"`+tc.client+`"`) {
				t.Errorf("identities = %s; the client named by an untrusted sender was believed", ids)
			}
		})
	}
}
