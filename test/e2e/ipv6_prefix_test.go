package e2e

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// TestIPv6PrefixChangeKeepsQuarantine: an IPv6 client banned under
// --ipv6-prefix 64 is still denied, over real gRPC, after a restart with a
// coarser or a finer prefix from the same state file, and the restart says
// in one log line what it regrouped.
func TestIPv6PrefixChangeKeepsQuarantine(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the binary (run without -short; CI does)")
	}
	const banned = "2001:db8:1:2::9"
	original := filepath.Join(t.TempDir(), "quarantine.json")
	svc := flowlocktest.Start(t, authz(), "--admin-token", adminToken, "--state-file", original, "--ipv6-prefix", "64")
	authc, health := clients(t, svc)
	waitServing(t, health)
	if code, body := svc.API(t, "POST", "/api/v1/quarantine", adminToken,
		`{"identity":"`+banned+`","ttl":"1h","reason":"manual"}`); code != 200 && code != 201 {
		t.Fatalf("ban = %d %s", code, body)
	}
	if v := check(t, authc, "2001:db8:1:2::abcd"); v.allowed {
		t.Fatal("another address in the banned /64 allowed before the restart")
	}
	svc.Stop()
	state, err := os.ReadFile(original)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		prefix  string
		denied  []string // clients still quarantined after the restart
		allowed []string
		log     []string // in the regroup log line
		// releaseListed releases the entry by its listed identity instead
		// of a client's address.
		releaseListed bool
	}{
		{"56", []string{"2001:db8:1:2::abcd", "2001:db8:1:ff::1"}, []string{"2001:db8:1:100::1"},
			[]string{`"level":"INFO"`, `"ipv6_prefix":"/56"`, `"from_prefixes":"/64"`, `"regrouped":1`}, false},
		{"128", []string{banned, "2001:db8:1:2::abcd"}, []string{"2001:db8:1:3::1"},
			[]string{`"level":"WARN"`, `"ipv6_prefix":"/128"`, `"from_prefixes":"/64"`, `"kept_as_ranges":1`}, true},
	}
	for _, tc := range tests {
		t.Run("ipv6-prefix="+tc.prefix, func(t *testing.T) {
			// Each restart starts from the file the /64 run wrote.
			path := filepath.Join(t.TempDir(), "quarantine.json")
			if err := writeFile(path, string(state)); err != nil {
				t.Fatal(err)
			}
			svc := flowlocktest.Start(t, authz(), "--admin-token", adminToken, "--state-file", path, "--ipv6-prefix", tc.prefix)
			authc, health := clients(t, svc)
			waitServing(t, health)
			for _, ip := range tc.denied {
				if v := check(t, authc, ip); v.allowed || v.status != 403 || v.retryAfter < 3000 {
					t.Errorf("%s after the restart = %+v; want 403 with ~1h left", ip, v)
				}
			}
			for _, ip := range tc.allowed {
				if v := check(t, authc, ip); !v.allowed {
					t.Errorf("%s, outside the ban, denied after the restart: %+v", ip, v)
				}
			}
			var line string
			for l := range strings.Lines(svc.Logs()) {
				if strings.Contains(l, `"msg":"quarantine regrouped`) {
					if line != "" {
						t.Errorf("more than one regroup log line:\n%s%s", line, l)
					}
					line = l
				}
			}
			for _, want := range tc.log {
				if !strings.Contains(line, want) {
					t.Errorf("regroup log line = %q; want it to contain %s", line, want)
				}
			}
			if strings.Contains(line, "2001:db8") {
				t.Errorf("regroup log line names an identity: %s", line)
			}
			// The operator can still release the entry: by a client's
			// address, or by the identity the listing shows, as the
			// dashboard's Release button does (for /128 that is the /64
			// kept as a range).
			target := tc.denied[0]
			if tc.releaseListed {
				code, body := svc.API(t, "GET", "/api/v1/quarantine", "", "")
				var list struct {
					Quarantine []struct{ Identity string } `json:"quarantine"`
				}
				if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || len(list.Quarantine) != 1 {
					t.Fatalf("GET /api/v1/quarantine = %d %s (%v), want one entry", code, body, err)
				}
				target = list.Quarantine[0].Identity
			}
			if code, body := svc.API(t, "DELETE", "/api/v1/quarantine/"+url.PathEscape(target), adminToken, ""); code != 200 {
				t.Fatalf("release %s = %d %s, want 200", target, code, body)
			}
			for _, ip := range tc.denied {
				if v := check(t, authc, ip); !v.allowed {
					t.Errorf("%s denied after its release: %+v", ip, v)
				}
			}
		})
	}
}
