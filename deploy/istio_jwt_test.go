package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	sigsyaml "sigs.k8s.io/yaml"
)

// The Istio types of the JWT example, with the fields the files use, in
// their JSON names (security.v1.RequestAuthentication,
// networking.v1alpha3.EnvoyFilter), decoded strictly.

type requestAuthentication struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		Selector *labelSelector `json:"selector"`
		JWTRules []struct {
			Issuer               string   `json:"issuer"`
			JwksURI              string   `json:"jwksUri"`
			Jwks                 string   `json:"jwks"`
			Audiences            []string `json:"audiences"`
			OutputClaimToHeaders []any    `json:"outputClaimToHeaders"`
		} `json:"jwtRules"`
	} `json:"spec"`
}

type envoyFilter struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		WorkloadSelector *struct {
			Labels map[string]string `json:"labels"`
		} `json:"workloadSelector"`
		ConfigPatches []struct {
			ApplyTo string `json:"applyTo"`
			Match   struct {
				Context  string `json:"context"`
				Listener struct {
					FilterChain struct {
						Filter struct {
							Name      string `json:"name"`
							SubFilter struct {
								Name string `json:"name"`
							} `json:"subFilter"`
						} `json:"filter"`
					} `json:"filterChain"`
				} `json:"listener"`
			} `json:"match"`
			Patch struct {
				Operation string `json:"operation"`
				Value     struct {
					TypedConfig json.RawMessage `json:"typed_config"`
				} `json:"value"`
			} `json:"patch"`
		} `json:"configPatches"`
	} `json:"spec"`
}

// istioJWTErrors checks deploy/istio/jwt against the AuthorizationPolicy
// one directory up: the RequestAuthentication and the EnvoyFilter select
// the gateway the policy sends to Flow Lock, the RequestAuthentication
// verifies with keys and copies no claim into a header, and the EnvoyFilter
// merges metadata_context_namespaces (with the jwt_authn namespace) into
// that gateway's ext_authz filter, a patch that loads as Envoy's ExtAuthz.
func istioJWTErrors(files map[string][]byte, policySelector map[string]string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var ras []requestAuthentication
	var efs []envoyFilter
	errs = append(errs, decodeByKind(files, map[string]func([]byte) error{
		"security.istio.io/v1 RequestAuthentication": func(doc []byte) error {
			ras = append(ras, requestAuthentication{})
			return decodeManifest(doc, &ras[len(ras)-1])
		},
		"networking.istio.io/v1alpha3 EnvoyFilter": func(doc []byte) error {
			efs = append(efs, envoyFilter{})
			return decodeManifest(doc, &efs[len(efs)-1])
		},
	})...)
	if len(errs) > 0 || len(ras) != 1 || len(efs) != 1 {
		bad("want one RequestAuthentication and one EnvoyFilter, got %d and %d", len(ras), len(efs))
		return errors.Join(errs...)
	}
	ra, ef := ras[0], efs[0]
	if ra.Spec.Selector == nil || !maps.Equal(ra.Spec.Selector.MatchLabels, policySelector) {
		bad("requestauthentication %s: selector must be the AuthorizationPolicy's %v, or tokens are verified elsewhere than the Check", ra.Metadata.Name, policySelector)
	}
	if len(ra.Spec.JWTRules) == 0 {
		bad("requestauthentication %s: no jwtRules", ra.Metadata.Name)
	}
	for _, r := range ra.Spec.JWTRules {
		if r.Issuer == "" || (r.JwksURI == "" && r.Jwks == "") {
			bad("requestauthentication %s: each jwtRule needs an issuer and keys (jwksUri or jwks)", ra.Metadata.Name)
		}
		if len(r.OutputClaimToHeaders) > 0 {
			bad("requestauthentication %s: outputClaimToHeaders puts a claim in a header that a request without a token keeps from the client; Flow Lock reads the metadata", ra.Metadata.Name)
		}
	}
	if ef.Spec.WorkloadSelector == nil || !maps.Equal(ef.Spec.WorkloadSelector.Labels, policySelector) {
		bad("envoyfilter %s: workloadSelector must be the AuthorizationPolicy's %v", ef.Metadata.Name, policySelector)
	}
	if len(ef.Spec.ConfigPatches) != 1 {
		bad("envoyfilter %s: want one config patch", ef.Metadata.Name)
		return errors.Join(errs...)
	}
	p := ef.Spec.ConfigPatches[0]
	if p.ApplyTo != "HTTP_FILTER" || p.Match.Context != "GATEWAY" || p.Patch.Operation != "MERGE" ||
		p.Match.Listener.FilterChain.Filter.Name != "envoy.filters.network.http_connection_manager" ||
		p.Match.Listener.FilterChain.Filter.SubFilter.Name != extAuthzFilter {
		bad("envoyfilter %s: must MERGE into the gateway's HTTP filter %s", ef.Metadata.Name, extAuthzFilter)
	}
	var a anypb.Any
	if err := protojson.Unmarshal(p.Patch.Value.TypedConfig, &a); err != nil {
		bad("envoyfilter %s: typed_config: %v", ef.Metadata.Name, err)
		return errors.Join(errs...)
	}
	authz := new(extauthzv3.ExtAuthz)
	if err := a.UnmarshalTo(authz); err != nil {
		bad("envoyfilter %s: typed_config is not an ExtAuthz: %v", ef.Metadata.Name, err)
	} else if !slices.Contains(authz.GetMetadataContextNamespaces(), jwtNamespace) {
		bad("envoyfilter %s: metadata_context_namespaces must list %s", ef.Metadata.Name, jwtNamespace)
	}
	return errors.Join(errs...)
}

// decodeByKind decodes every document of files, in file name order, with
// the decoder its "apiVersion kind" names; a document of any other kind is
// an error, so no file goes unchecked.
func decodeByKind(files map[string][]byte, decoders map[string]func(doc []byte) error) []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(files)) {
		for i, doc := range splitDocuments(files[name]) {
			var tm typeMeta
			if err := sigsyaml.Unmarshal(doc, &tm); err != nil {
				errs = append(errs, fmt.Errorf("%s doc %d: %v", name, i, err))
				continue
			}
			decode, ok := decoders[tm.APIVersion+" "+tm.Kind]
			if !ok {
				errs = append(errs, fmt.Errorf("%s doc %d (%s): apiVersion %q kind %q is not checked by this test", name, i, tm.Kind, tm.APIVersion, tm.Kind))
				continue
			}
			if err := decode(doc); err != nil {
				errs = append(errs, fmt.Errorf("%s doc %d (%s): %v", name, i, tm.Kind, err))
			}
		}
	}
	return errs
}

// istioPolicySelector returns the AuthorizationPolicy's selector.
func istioPolicySelector(t *testing.T) map[string]string {
	t.Helper()
	docs := splitDocuments(readDir(t, istioDir)["authorizationpolicy.yaml"])
	if len(docs) == 0 {
		t.Fatal("no AuthorizationPolicy")
	}
	var p authorizationPolicy
	if err := decodeManifest(docs[0], &p); err != nil {
		t.Fatal(err)
	}
	return p.Spec.Selector.MatchLabels
}

func TestIstioJWT(t *testing.T) {
	if err := istioJWTErrors(readDir(t, filepath.Join(istioDir, "jwt")), istioPolicySelector(t)); err != nil {
		t.Fatalf("deploy/istio/jwt:\n%v", err)
	}
}

func TestIstioJWTRejectsBrokenCopies(t *testing.T) {
	files := readDir(t, filepath.Join(istioDir, "jwt"))
	sel := istioPolicySelector(t)
	for _, tc := range []fileEdit{
		{name: "namespace not forwarded", file: "envoyfilter.yaml",
			old: "          - envoy.filters.http.jwt_authn\n", new: "          - envoy.filters.http.rbac\n",
			wantErr: "metadata_context_namespaces must list envoy.filters.http.jwt_authn"},
		{name: "misspelt field in the patch", file: "envoyfilter.yaml",
			old: "metadata_context_namespaces:", new: "metadata_namespaces:",
			wantErr: "unknown field"},
		{name: "another workload", file: "envoyfilter.yaml",
			old: "      istio: ingressgateway", new: "      app: api",
			wantErr: "workloadSelector must be the AuthorizationPolicy's"},
		{name: "tokens verified elsewhere", file: "requestauthentication.yaml",
			old: "      istio: ingressgateway", new: "      app: api",
			wantErr: "selector must be the AuthorizationPolicy's"},
		{name: "claim copied to a header", file: "requestauthentication.yaml",
			old: "    audiences: [api.example.com]\n", new: "    audiences: [api.example.com]\n    outputClaimToHeaders:\n    - header: x-jwt-sub\n      claim: sub\n",
			wantErr: "outputClaimToHeaders"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkRejected(t, "istio jwt", istioJWTErrors(applyEdit(t, files, tc), sel), tc.wantErr)
		})
	}
}
