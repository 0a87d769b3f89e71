package deploy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const istioDir = "istio"

// The Istio types below are the fields of istio.io/api the files use, with
// their JSON names (MeshConfig.ExtensionProvider.EnvoyExternalAuthorization-
// GrpcProvider, ProxyConfig.Topology, security.v1.AuthorizationPolicy),
// decoded strictly like the Kubernetes manifests.

type istioOperator struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		MeshConfig meshConfig `json:"meshConfig"`
	} `json:"spec"`
}

type meshConfig struct {
	ExtensionProviders []struct {
		Name              string        `json:"name"`
		EnvoyExtAuthzGrpc *grpcProvider `json:"envoyExtAuthzGrpc"`
		EnvoyExtAuthzHTTP any           `json:"envoyExtAuthzHttp"`
	} `json:"extensionProviders"`
	DefaultConfig struct {
		GatewayTopology struct {
			NumTrustedProxies        *int   `json:"numTrustedProxies"`
			ForwardClientCertDetails string `json:"forwardClientCertDetails"`
		} `json:"gatewayTopology"`
	} `json:"defaultConfig"`
}

type grpcProvider struct {
	Service                   string `json:"service"`
	Port                      int    `json:"port"`
	Timeout                   string `json:"timeout"`
	FailOpen                  bool   `json:"failOpen"`
	StatusOnError             string `json:"statusOnError"`
	IncludeRequestBodyInCheck *struct {
		MaxRequestBytes     int  `json:"maxRequestBytes"`
		AllowPartialMessage bool `json:"allowPartialMessage"`
		PackAsBytes         bool `json:"packAsBytes"`
	} `json:"includeRequestBodyInCheck"`
}

type authorizationPolicy struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		Selector *labelSelector `json:"selector"`
		Action   string         `json:"action"`
		Provider *struct {
			Name string `json:"name"`
		} `json:"provider"`
		Rules []struct {
			From []any `json:"from"`
			To   []struct {
				Operation struct {
					Hosts      []string `json:"hosts"`
					NotHosts   []string `json:"notHosts"`
					Ports      []string `json:"ports"`
					NotPorts   []string `json:"notPorts"`
					Methods    []string `json:"methods"`
					NotMethods []string `json:"notMethods"`
					Paths      []string `json:"paths"`
					NotPaths   []string `json:"notPaths"`
				} `json:"operation"`
			} `json:"to"`
			When []any `json:"when"`
		} `json:"rules"`
	} `json:"spec"`
}

// istioErrors checks the Istio files against each other and against the
// Kubernetes Service and Deployment (k8s):
//   - the AuthorizationPolicy is CUSTOM, names an extension provider of the
//     mesh config, has rules (a CUSTOM policy without rules never applies)
//     and leaves the health endpoints out;
//   - that provider is an envoyExtAuthzGrpc provider pointing at the
//     flowlock-authz Service's gRPC port, with a finite timeout of at most
//     1s, failOpen, and no request body;
//   - the gateway's numTrustedProxies equals Flow Lock's --xff-trusted-hops.
func istioErrors(files map[string][]byte, k8s k8sFacts) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	var ops []istioOperator
	var pols []authorizationPolicy
	errs = append(errs, decodeByKind(files, map[string]func([]byte) error{
		"install.istio.io/v1alpha1 IstioOperator": func(doc []byte) error {
			ops = append(ops, istioOperator{})
			return decodeManifest(doc, &ops[len(ops)-1])
		},
		"security.istio.io/v1 AuthorizationPolicy": func(doc []byte) error {
			pols = append(pols, authorizationPolicy{})
			return decodeManifest(doc, &pols[len(pols)-1])
		},
	})...)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if len(ops) != 1 || len(pols) != 1 {
		bad("want one IstioOperator and one AuthorizationPolicy, got %d and %d", len(ops), len(pols))
		return errors.Join(errs...)
	}
	mesh, pol := ops[0].Spec.MeshConfig, pols[0]

	if pol.Spec.Action != "CUSTOM" {
		bad("authorizationpolicy %s: action must be CUSTOM, got %q", pol.Metadata.Name, pol.Spec.Action)
	}
	if pol.Spec.Selector == nil || len(pol.Spec.Selector.MatchLabels) == 0 {
		bad("authorizationpolicy %s: no selector: it would apply to every workload in %s", pol.Metadata.Name, pol.Metadata.Namespace)
	}
	if len(pol.Spec.Rules) == 0 {
		bad("authorizationpolicy %s: a CUSTOM policy without rules matches no request and never calls Flow Lock", pol.Metadata.Name)
	}
	var notPaths []string
	for _, r := range pol.Spec.Rules {
		for _, to := range r.To {
			notPaths = append(notPaths, to.Operation.NotPaths...)
		}
	}
	if !slices.Contains(notPaths, "/healthz") {
		bad("authorizationpolicy %s: health checks (/healthz) are sent to Flow Lock", pol.Metadata.Name)
	}

	var prov *grpcProvider
	provName := ""
	if pol.Spec.Provider != nil {
		provName = pol.Spec.Provider.Name
	}
	for _, ep := range mesh.ExtensionProviders {
		if ep.Name == provName {
			prov = ep.EnvoyExtAuthzGrpc
			if prov == nil {
				bad("extension provider %q is not envoyExtAuthzGrpc: Flow Lock's Check is gRPC", provName)
				return errors.Join(errs...)
			}
		}
	}
	if prov == nil {
		bad("authorizationpolicy %s: provider %q is not an extensionProviders entry of the mesh config", pol.Metadata.Name, provName)
		return errors.Join(errs...)
	}
	if want := k8s.serviceName + "." + k8s.namespace + ".svc.cluster.local"; prov.Service != want {
		bad("extension provider %s: service %q, want %q (deploy/kubernetes)", provName, prov.Service, want)
	}
	if prov.Port != k8s.grpcPort || k8s.grpcAppProt != "grpc" {
		bad("extension provider %s: port %d, want the Service's gRPC port %d", provName, prov.Port, k8s.grpcPort)
	}
	switch d, err := protoDuration(prov.Timeout); {
	case prov.Timeout == "":
		bad("extension provider %s: timeout must be set: Istio's default for gRPC providers is 600s", provName)
	case err != nil:
		bad("extension provider %s: timeout: %v", provName, err)
	case d <= 0 || d > maxCheckTimeout:
		bad("extension provider %s: timeout %v must be in (0, %v]", provName, d, maxCheckTimeout)
	}
	if !prov.FailOpen {
		bad("extension provider %s: failOpen must be true: a behaviour filter must fail open", provName)
	}
	if prov.IncludeRequestBodyInCheck != nil {
		bad("extension provider %s: includeRequestBodyInCheck must be absent: Flow Lock never reads the body", provName)
	}

	// Trust: the gateway and Flow Lock must agree on the proxies in front.
	hops := mesh.DefaultConfig.GatewayTopology.NumTrustedProxies
	switch {
	case hops == nil:
		bad("gatewayTopology.numTrustedProxies is not set explicitly; Flow Lock's --xff-trusted-hops must match it")
	case *hops != k8s.flowlock.XFFTrustedHops:
		bad("gatewayTopology.numTrustedProxies is %d but flowlock-authz --xff-trusted-hops is %d: they must agree", *hops, k8s.flowlock.XFFTrustedHops)
	}
	return errors.Join(errs...)
}

// protoDuration parses a google.protobuf.Duration in its JSON form
// ("0.25s"): seconds with an "s" suffix, nothing else.
func protoDuration(s string) (time.Duration, error) {
	secs, ok := strings.CutSuffix(s, "s")
	if !ok || secs == "" || strings.ContainsAny(secs, "hmuµn") {
		return 0, fmt.Errorf("%q is not a protobuf JSON duration (seconds with an s suffix)", s)
	}
	return time.ParseDuration(secs + "s")
}

func TestIstio(t *testing.T) {
	k8s := loadKubernetes(t)
	if err := istioErrors(readDir(t, istioDir), k8s); err != nil {
		t.Fatalf("deploy/istio:\n%v", err)
	}
}

var istioBrokenCopies = []fileEdit{
	{
		name: "field name in the wrong case", file: "meshconfig.yaml",
		old: "failOpen: true", new: "failopen: true",
		wantErr: `unknown object member name "failopen"`,
	},
	{
		name: "HTTP-only field on a gRPC provider", file: "meshconfig.yaml",
		old: "        failOpen: true\n", new: "        failOpen: true\n        includeRequestHeadersInCheck: [x-api-key]\n",
		wantErr: `unknown object member name "includeRequestHeadersInCheck"`,
	},
	{
		name: "not a CUSTOM policy", file: "authorizationpolicy.yaml",
		old: "  action: CUSTOM\n", new: "  action: ALLOW\n",
		wantErr: `action must be CUSTOM, got "ALLOW"`,
	},
	{
		name: "provider not defined in the mesh config", file: "authorizationpolicy.yaml",
		old: "  provider:\n    name: flowlock\n", new: "  provider:\n    name: flow-lock\n",
		wantErr: `provider "flow-lock" is not an extensionProviders entry`,
	},
	{
		name: "policy without rules", file: "authorizationpolicy.yaml",
		old: "  rules:\n  - to:\n    - operation:\n        notPaths: [\"/healthz\", \"/readyz\"]\n", new: "",
		wantErr: "a CUSTOM policy without rules matches no request",
	},
	{
		name: "health checks sent to Flow Lock", file: "authorizationpolicy.yaml",
		old: `notPaths: ["/healthz", "/readyz"]`, new: `notPaths: ["/readyz"]`,
		wantErr: "health checks (/healthz) are sent to Flow Lock",
	},
	{
		name: "fail closed", file: "meshconfig.yaml",
		old: "failOpen: true", new: "failOpen: false",
		wantErr: "failOpen must be true",
	},
	{
		name: "default timeout", file: "meshconfig.yaml",
		old: "        timeout: 0.25s\n", new: "",
		wantErr: "timeout must be set: Istio's default for gRPC providers is 600s",
	},
	{
		name: "long timeout", file: "meshconfig.yaml",
		old: "timeout: 0.25s", new: "timeout: 30s",
		wantErr: "timeout 30s must be in (0, 1s]",
	},
	{
		name: "Go duration instead of a protobuf duration", file: "meshconfig.yaml",
		old: "timeout: 0.25s", new: "timeout: 250ms",
		wantErr: `"250ms" is not a protobuf JSON duration`,
	},
	{
		name: "request body sent", file: "meshconfig.yaml",
		old: "        failOpen: true\n", new: "        failOpen: true\n        includeRequestBodyInCheck:\n          maxRequestBytes: 8192\n",
		wantErr: "includeRequestBodyInCheck must be absent",
	},
	{
		name: "provider points at the dashboard port", file: "meshconfig.yaml",
		old: "port: 9191", new: "port: 8080",
		wantErr: "port 8080, want the Service's gRPC port 9191",
	},
	{
		name: "provider points at another namespace", file: "meshconfig.yaml",
		old: "service: flowlock-authz.flowlock.svc.cluster.local", new: "service: flowlock-authz.default.svc.cluster.local",
		wantErr: `want "flowlock-authz.flowlock.svc.cluster.local"`,
	},
	{
		name: "gateway trusts more proxies than Flow Lock", file: "meshconfig.yaml",
		old: "numTrustedProxies: 0", new: "numTrustedProxies: 1",
		wantErr: "numTrustedProxies is 1 but flowlock-authz --xff-trusted-hops is 0: they must agree",
	},
}

func TestIstioRejectsBrokenCopies(t *testing.T) {
	k8s := loadKubernetes(t)
	files := readDir(t, istioDir)
	for _, tc := range istioBrokenCopies {
		t.Run(tc.name, func(t *testing.T) {
			checkRejected(t, "istio", istioErrors(applyEdit(t, files, tc), k8s), tc.wantErr)
		})
	}
	// The agreement also breaks from the Kubernetes side.
	t.Run("Flow Lock trusts more hops than the gateway", func(t *testing.T) {
		kfiles := applyEdit(t, readTree(t, kubernetesDir), fileEdit{
			file: "base/deployment.yaml", old: "--xff-trusted-hops=0", new: "--xff-trusted-hops=2",
		})
		k8s, err := checkKubernetes(kfiles, kubernetesOverlays[0])
		if err != nil {
			t.Fatal(err)
		}
		checkRejected(t, "istio", istioErrors(files, k8s), "numTrustedProxies is 0 but flowlock-authz --xff-trusted-hops is 2")
	})
}
