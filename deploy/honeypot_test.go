package deploy

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"

	"github.com/flowlock/flowlock/internal/config"
)

// The request header and value Flow Lock's honeypot answer sets
// (internal/authz, --quarantine-action honeypot).
const (
	honeypotHeader = "x-flowlock-route"
	honeypotValue  = "honeypot"
)

// honeypotRouteErrors checks the honeypot route of deploy/envoy.yaml, if
// there is one. Envoy accepts each of these mistakes, and each one quietly
// undoes the honeypot:
//   - without clear_route_cache the route is chosen before the Check and
//     never again, so the header is set and the bot still reaches the API;
//   - a honeypot route after the catch-all is never taken;
//   - a honeypot route to the API's own cluster deceives nobody;
//   - unless x-flowlock-* is stripped before routing, a client can route
//     itself to the decoy and learn what it looks like, and so tell later
//     when it has been sent there.
func honeypotRouteErrors(where string, hcm *hcmv3.HttpConnectionManager, a *extauthzv3.ExtAuthz, clusters map[string]*clusterv3.Cluster) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(where+": honeypot route: "+format, args...))
	}
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		honeypot, catchAll := -1, -1
		var decoy, api string
		for i, r := range vh.GetRoutes() {
			m := r.GetMatch()
			if len(m.GetHeaders()) == 0 && m.GetPrefix() == "/" && catchAll < 0 {
				catchAll, api = i, r.GetRoute().GetCluster()
			}
			for _, h := range m.GetHeaders() {
				if h.GetName() == honeypotHeader && h.GetStringMatch().GetExact() == honeypotValue && honeypot < 0 {
					honeypot, decoy = i, r.GetRoute().GetCluster()
				}
			}
		}
		if honeypot < 0 {
			continue
		}
		if !a.GetClearRouteCache() {
			bad("ext_authz clear_route_cache must be true, or the route chosen before the Check stands and %s: %s is never routed on", honeypotHeader, honeypotValue)
		}
		if catchAll >= 0 && catchAll < honeypot {
			bad("virtual host %s: the route on %s must come before the catch-all, which matches first", vh.GetName(), honeypotHeader)
		}
		if clusters[decoy] == nil || decoy == api {
			bad("virtual host %s: must route to a decoy cluster of its own, not %q", vh.GetName(), decoy)
		}
	}
	if len(errs) == 0 && !stripsFlowlockHeaders(hcm) {
		bad("early_header_mutation_extensions must remove every x-flowlock-* header (remove_on_match prefix x-flowlock-), or a client routes itself to the decoy and learns what it looks like")
	}
	return errs
}

// stripsFlowlockHeaders reports whether hcm's early header mutation removes
// every header whose name starts with x-flowlock-.
func stripsFlowlockHeaders(hcm *hcmv3.HttpConnectionManager) bool {
	for _, ext := range hcm.GetEarlyHeaderMutationExtensions() {
		hm := new(headermutationv3.HeaderMutation)
		if ext.GetTypedConfig().UnmarshalTo(hm) != nil {
			continue
		}
		for _, m := range hm.GetMutations() {
			if m.GetRemoveOnMatch().GetKeyMatcher().GetPrefix() == "x-flowlock-" {
				return true
			}
		}
	}
	return false
}

// TestEnvoyHoneypotRoute: deploy/envoy.yaml ships the honeypot route and
// its decoy cluster, and they pass the checks above.
func TestEnvoyHoneypotRoute(t *testing.T) {
	loadDemoEnvoy(t) // runs honeypotRouteErrors among the policy checks
	b, err := loadBootstrap(readEnvoyFile(t))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	editHCM(t, b, func(h *hcmv3.HttpConnectionManager) {
		for _, r := range h.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
			for _, m := range r.GetMatch().GetHeaders() {
				found = found || (m.GetName() == honeypotHeader && r.GetRoute().GetCluster() == "honeypot")
			}
		}
	})
	if !found || clusterNamed(t, b, "honeypot") == nil {
		t.Fatalf("%s has no route on %s to the honeypot cluster", envoyFile, honeypotHeader)
	}
}

// TestTarpitDelayFitsEnvoyTimeout: the default --tarpit-delay ends before
// the demo's ext_authz timeout, or a tarpitted Check would time out and
// Envoy would fail open, letting the quarantined bot through.
func TestTarpitDelayFitsEnvoyTimeout(t *testing.T) {
	b, err := loadBootstrap(readEnvoyFile(t))
	if err != nil {
		t.Fatal(err)
	}
	editHCM(t, b, func(h *hcmv3.HttpConnectionManager) {
		a, err := hcmExtAuthz(h)
		if err != nil {
			t.Fatal(err)
		}
		timeout := a.GetGrpcService().GetTimeout().AsDuration()
		if d := config.Default().TarpitDelay; d >= timeout {
			t.Errorf("default --tarpit-delay %v is not below the ext_authz timeout %v", d, timeout)
		}
	})
}

func init() {
	brokenCopies = append(brokenCopies,
		brokenCopy{
			name:    "honeypot route without clear_route_cache",
			old:     "clear_route_cache: true",
			new:     "clear_route_cache: false",
			stage:   "policy",
			wantErr: "clear_route_cache must be true",
		},
		brokenCopy{
			name: "honeypot route after the catch-all",
			tree: func(t *testing.T, b *bootstrapv3.Bootstrap) {
				editHCM(t, b, func(h *hcmv3.HttpConnectionManager) {
					rs := h.GetRouteConfig().GetVirtualHosts()[0].Routes
					n := len(rs)
					rs[n-2], rs[n-1] = rs[n-1], rs[n-2]
				})
			},
			stage:   "policy",
			wantErr: "must come before the catch-all",
		},
		brokenCopy{
			name:    "honeypot route to the API",
			old:     "route: { cluster: honeypot }",
			new:     "route: { cluster: sample_api }",
			stage:   "policy",
			wantErr: "must route to a decoy cluster of its own",
		},
		brokenCopy{
			name:    "honeypot route to a missing cluster",
			old:     "route: { cluster: honeypot }",
			new:     "route: { cluster: honeypott }",
			stage:   "envoy",
			wantErr: `unknown route cluster "honeypott"`,
		},
		brokenCopy{
			name:    "client-sent x-flowlock-* headers kept",
			old:     "key_matcher: { prefix: x-flowlock- }",
			new:     "key_matcher: { prefix: x-flowlock-admin- }",
			stage:   "policy",
			wantErr: "must remove every x-flowlock-* header",
		},
	)
}

// TestComposeHoneypot: the compose demo's honeypot profile runs the decoy
// where envoy.yaml's honeypot cluster sends quarantined clients, with its
// records API on an internal network that the Flow Lock replicas share and
// Envoy and the attacker do not, and the replicas read it from there.
func TestComposeHoneypot(t *testing.T) {
	envoy := loadDemoEnvoy(t)
	df := loadDockerfile(t)
	b, err := loadBootstrap(readEnvoyFile(t))
	if err != nil {
		t.Fatal(err)
	}
	ep := clusterNamed(t, b, "honeypot").GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()

	p, err := loadCompose(t, composeFile, map[string]string{
		"FLOWLOCK_QUARANTINE_ACTION": "honeypot",
		"FLOWLOCK_HONEYPOT_URL":      "http://172.29.91.10:8091",
	}, "honeypot", "attack")
	if err != nil {
		t.Fatal(err)
	}
	facts, err := composeErrors(p, envoy, df)
	if err != nil {
		t.Fatal(err)
	}
	if facts.flowlock.QuarantineAction != "honeypot" {
		t.Errorf("quarantine action = %q with FLOWLOCK_QUARANTINE_ACTION=honeypot", facts.flowlock.QuarantineAction)
	}
	decoy, err := p.GetService(ep.GetAddress())
	if err != nil {
		t.Fatalf("envoy.yaml's honeypot cluster names %s: %v", ep.GetAddress(), err)
	}
	if decoy.Build == nil || decoy.Build.Target != "honeypot" || !hasHealthcheck(decoy, df) {
		t.Errorf("service %s: build %+v; want the Dockerfile's honeypot target with a health check", decoy.Name, decoy.Build)
	}
	if got := listenPort(flagValue(decoy.Command, "--addr")); got != ep.GetPortValue() {
		t.Errorf("decoy bait listens on %d, envoy.yaml sends to %d", got, ep.GetPortValue())
	}
	apiAddr := flagValue(decoy.Command, "--api-addr")
	if !strings.HasSuffix(facts.flowlock.HoneypotURL, "//"+apiAddr) {
		t.Errorf("replicas read the decoy at %q, it serves its records at %s", facts.flowlock.HoneypotURL, apiAddr)
	}
	// The records API binds one address: on an internal network that only
	// the decoy and the replicas join.
	host, _, _ := net.SplitHostPort(apiAddr)
	var apiNet string
	for name, n := range decoy.Networks {
		if n != nil && n.Ipv4Address == host {
			apiNet = name
		}
	}
	if apiNet == "" || !p.Networks[apiNet].Internal {
		t.Fatalf("decoy --api-addr %s is not its address on an internal network (%v)", apiAddr, decoy.Networks)
	}
	for _, name := range p.ServiceNames() {
		_, on := p.Services[name].Networks[apiNet]
		if want := name == decoy.Name || slices.Contains(facts.replicas, name); on != want {
			t.Errorf("service %s on network %s: %v, want %v", name, apiNet, on, want)
		}
	}

	def, err := loadCompose(t, composeFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	facts, err = composeErrors(def, envoy, df)
	if err != nil || facts.flowlock.QuarantineAction != "deny" || facts.flowlock.HoneypotURL != "" {
		t.Errorf("default compose: action %q, honeypot url %q (%v); want deny and none", facts.flowlock.QuarantineAction, facts.flowlock.HoneypotURL, err)
	}
}
