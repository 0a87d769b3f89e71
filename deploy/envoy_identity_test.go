package deploy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

const (
	// jwtNamespace is where jwt_authn writes verified payloads and what
	// ext_authz must forward for --identity-jwt-claim.
	jwtNamespace = "envoy.filters.http.jwt_authn"
	// payloadKey is --identity-jwt-payload-key's default.
	payloadKey = "payload"
	// fingerprintHeader is the header the example sets, the value to give
	// --fingerprint-header.
	fingerprintHeader = "x-tls-ja4"
)

// uncommentExamples returns doc with every block between "# NAME:start"
// and "# NAME:end" uncommented, as an operator would, after edit has
// changed each block's commented text (nil changes nothing).
func uncommentExamples(t *testing.T, doc, name string, edit func(string) string) string {
	t.Helper()
	start, end := "# "+name+":start", "# "+name+":end"
	var out strings.Builder
	blocks := 0
	for {
		i := strings.Index(doc, start)
		if i < 0 {
			break
		}
		j := strings.Index(doc[i:], end)
		if j < 0 {
			t.Fatalf("%s: %q without %q", envoyFile, start, end)
		}
		j += i
		i = strings.Index(doc[i:], "\n") + i + 1
		block := doc[i:j]
		if edit != nil {
			block = edit(block)
		}
		out.WriteString(doc[:i])
		for line := range strings.Lines(block) {
			trimmed := strings.TrimLeft(line, " ")
			indent := line[:len(line)-len(trimmed)]
			switch {
			case strings.HasPrefix(trimmed, "# "):
				out.WriteString(indent + trimmed[2:])
			case strings.TrimSpace(trimmed) == "":
				out.WriteString(line)
			default:
				t.Fatalf("line %q of example %s is not commented out", line, name)
			}
		}
		doc = doc[j:]
		// Step past this end marker so the next search finds the next block.
		k := strings.Index(doc, "\n") + 1
		out.WriteString(doc[:k])
		doc = doc[k:]
		blocks++
	}
	if blocks == 0 {
		t.Fatalf("%s lacks the commented example %s", envoyFile, name)
	}
	out.WriteString(doc)
	return out.String()
}

// loadExample loads the demo bootstrap with the named example uncommented
// and runs every check on it: Envoy's, Flow Lock's and the identity ones.
func loadExample(t *testing.T, name string, edit func(string) string) (*bootstrapv3.Bootstrap, error) {
	t.Helper()
	b, err := loadBootstrap([]byte(uncommentExamples(t, string(readEnvoyFile(t)), name, edit)))
	if err != nil {
		return nil, err
	}
	if err := envoyStartupErrors(b); err != nil {
		return nil, err
	}
	if _, err := flowlockPolicyErrors(b); err != nil {
		return nil, err
	}
	return b, identityErrors(b)
}

// identityErrors checks what --identity-jwt-claim and --fingerprint-header
// rely on, wherever the file enables them:
//   - a jwt_authn filter runs before ext_authz, every provider writes its
//     payload under payloadKey, and ext_authz forwards jwtNamespace;
//   - a header_mutation filter that sets fingerprintHeader from
//     %TLS_JA4_FINGERPRINT% (or JA3) runs before ext_authz and removes a
//     client-sent copy first, on a TLS filter chain of a listener whose
//     tls_inspector computes that fingerprint.
func identityErrors(b *bootstrapv3.Bootstrap) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, l := range b.GetStaticResources().GetListeners() {
		ja3, ja4 := false, false
		for _, lf := range l.GetListenerFilters() {
			ti := new(tlsinspectorv3.TlsInspector)
			if lf.GetTypedConfig().MessageIs(ti) && lf.GetTypedConfig().UnmarshalTo(ti) == nil {
				ja3, ja4 = ti.GetEnableJa3Fingerprinting().GetValue(), ti.GetEnableJa4Fingerprinting().GetValue()
			}
		}
		for _, fc := range l.GetFilterChains() {
			tlsChain := fc.GetTransportSocket().GetTypedConfig().MessageIs(new(tlsv3.DownstreamTlsContext))
			for _, f := range fc.GetFilters() {
				hcm := new(hcmv3.HttpConnectionManager)
				if !f.GetTypedConfig().MessageIs(hcm) || f.GetTypedConfig().UnmarshalTo(hcm) != nil {
					continue
				}
				where := "listener " + l.GetName()
				authzAt, jwtAt, fpAt := -1, -1, -1
				var authz extauthzv3.ExtAuthz
				for i, hf := range hcm.GetHttpFilters() {
					tc := hf.GetTypedConfig()
					jwt, hm := new(jwtauthnv3.JwtAuthentication), new(headermutationv3.HeaderMutation)
					switch {
					case tc.MessageIs(&authz):
						authzAt = i
						_ = tc.UnmarshalTo(&authz)
					case tc.MessageIs(jwt) && tc.UnmarshalTo(jwt) == nil:
						jwtAt = i
						for name, p := range jwt.GetProviders() {
							if p.GetPayloadInMetadata() != payloadKey {
								bad("%s: jwt_authn provider %s: payload_in_metadata must be %q (--identity-jwt-payload-key), got %q", where, name, payloadKey, p.GetPayloadInMetadata())
							}
						}
					case tc.MessageIs(hm) && tc.UnmarshalTo(hm) == nil:
						if setsFingerprint(hm, ja3, ja4) {
							fpAt = i
						}
					}
				}
				forwards := slices.Contains(authz.GetMetadataContextNamespaces(), jwtNamespace)
				switch {
				case jwtAt >= 0 && jwtAt > authzAt:
					bad("%s: jwt_authn must run before ext_authz, or the Check carries no verified claim", where)
				case jwtAt >= 0 && !forwards:
					bad("%s: ext_authz metadata_context_namespaces must list %s, or the verified payload never reaches Flow Lock", where, jwtNamespace)
				case jwtAt < 0 && forwards:
					bad("%s: ext_authz forwards %s but no jwt_authn filter writes it", where, jwtNamespace)
				}
				if fpAt >= 0 {
					switch {
					case fpAt > authzAt:
						bad("%s: the %s header must be set before ext_authz runs", where, fingerprintHeader)
					case !tlsChain:
						bad("%s: %s is set on a filter chain without TLS: there is no fingerprint to set", where, fingerprintHeader)
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

// setsFingerprint reports whether hm removes any client-sent
// fingerprintHeader and then sets it from a fingerprint the listener's
// tls_inspector computes.
func setsFingerprint(hm *headermutationv3.HeaderMutation, ja3, ja4 bool) bool {
	removed := false
	for _, m := range hm.GetMutations().GetRequestMutations() {
		if m.GetRemove() == fingerprintHeader {
			removed = true
		}
		h := m.GetAppend().GetHeader()
		if h.GetKey() != fingerprintHeader {
			continue
		}
		v := h.GetValue()
		return removed && ((v == "%TLS_JA4_FINGERPRINT%" && ja4) || (v == "%TLS_JA3_FINGERPRINT%" && ja3))
	}
	return false
}

// TestEnvoyJWTAuthnExample validates the commented jwt_authn + ext_authz
// example for real: uncommented, the bootstrap loads and passes every
// check, and the verified payload reaches Flow Lock where
// --identity-jwt-claim reads it.
func TestEnvoyJWTAuthnExample(t *testing.T) {
	b, err := loadExample(t, "jwt-authn-example", nil)
	if err != nil {
		t.Fatalf("the uncommented jwt_authn example:\n%v", err)
	}
	hcm := firstHCM(t, b)
	if names := filterNames(hcm); !slices.Equal(names[:2], []string{jwtNamespace, extAuthzFilter}) {
		t.Errorf("http filters = %v, want jwt_authn then ext_authz", names)
	}
	if err := identityErrors(mustLoad(t, readEnvoyFile(t))); err != nil {
		t.Errorf("the shipped file: %v", err)
	}
	if names := filterNames(firstHCM(t, mustLoad(t, readEnvoyFile(t)))); slices.Contains(names, jwtNamespace) {
		t.Error("the shipped demo has jwt_authn on: the example must stay commented (the demo has no issuer)")
	}
}

// TestEnvoyTLSFingerprintExample does the same for the TLS fingerprint
// example: tls_inspector computes JA4 on a TLS listener, and the header is
// Envoy's own by the time ext_authz runs.
func TestEnvoyTLSFingerprintExample(t *testing.T) {
	b, err := loadExample(t, "tls-fingerprint-example", nil)
	if err != nil {
		t.Fatalf("the uncommented fingerprint example:\n%v", err)
	}
	names := filterNames(firstHCM(t, b))
	if i := slices.Index(names, "envoy.filters.http.header_mutation"); i < 0 || i > slices.Index(names, extAuthzFilter) {
		t.Errorf("http filters = %v, want header_mutation before ext_authz", names)
	}
	if !setsFingerprint(headerMutation(t, b), false, true) {
		t.Error("the example does not set the fingerprint header from TLS_JA4_FINGERPRINT")
	}
	// Both examples at once, as a production edge would run them.
	doc := uncommentExamples(t, string(readEnvoyFile(t)), "jwt-authn-example", nil)
	doc = uncommentExamples(t, doc, "tls-fingerprint-example", nil)
	both := mustLoad(t, []byte(doc))
	if err := errors.Join(envoyStartupErrors(both), identityErrors(both)); err != nil {
		t.Fatalf("both examples together:\n%v", err)
	}
	if _, err := flowlockPolicyErrors(both); err != nil {
		t.Fatalf("both examples together:\n%v", err)
	}
}

// TestEnvoyIdentityExampleMistakes: the checks catch what an operator
// could get wrong when adapting the examples.
func TestEnvoyIdentityExampleMistakes(t *testing.T) {
	for _, tc := range []struct {
		name, example, old, new, want string
	}{
		{"claim never forwarded", "jwt-authn-example", "metadata_context_namespaces: [envoy.filters.http.jwt_authn]", "metadata_context_namespaces: [envoy.filters.http.rbac]", "must list envoy.filters.http.jwt_authn"},
		{"another payload key", "jwt-authn-example", "payload_in_metadata: payload", "payload_in_metadata: verified_jwt", "payload_in_metadata must be"},
		{"client header kept", "tls-fingerprint-example", "- remove: x-tls-ja4", "- remove: x-other", ""},
		{"no JA4 computed", "tls-fingerprint-example", "enable_ja4_fingerprinting: true", "enable_ja4_fingerprinting: false", ""},
		{"a field that does not exist", "tls-fingerprint-example", "enable_ja4_fingerprinting: true", "enable_ja4_fingerprint: true", "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := loadExample(t, tc.example, func(s string) string { return strings.Replace(s, tc.old, tc.new, 1) })
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error = %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// The header is no longer reliably Envoy's: the example no
			// longer counts as setting it.
			if hm := headerMutation(t, b); hm != nil && setsFingerprint(hm, true, strings.Contains(tc.new, "true")) {
				t.Error("a mutation that keeps the client's header, or a JA4 never computed, counts as setting the fingerprint")
			}
		})
	}
}

func mustLoad(t *testing.T, doc []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	b, err := loadBootstrap(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func firstHCM(t *testing.T, b *bootstrapv3.Bootstrap) *hcmv3.HttpConnectionManager {
	t.Helper()
	hcm := new(hcmv3.HttpConnectionManager)
	if err := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	return hcm
}

func filterNames(hcm *hcmv3.HttpConnectionManager) []string {
	var out []string
	for _, f := range hcm.GetHttpFilters() {
		out = append(out, f.GetName())
	}
	return out
}

func headerMutation(t *testing.T, b *bootstrapv3.Bootstrap) *headermutationv3.HeaderMutation {
	t.Helper()
	for _, f := range firstHCM(t, b).GetHttpFilters() {
		hm := new(headermutationv3.HeaderMutation)
		if f.GetTypedConfig().MessageIs(hm) && f.GetTypedConfig().UnmarshalTo(hm) == nil {
			return hm
		}
	}
	return nil
}
