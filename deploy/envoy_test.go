package deploy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	sigsyaml "sigs.k8s.io/yaml"

	// Extensions are linked in so that their typed_config resolves through
	// the global registry, as it does in an Envoy binary built with them.
	// A typed_config whose type is not linked in fails to load, which is also
	// what Envoy does with an extension it was not built with.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

const (
	envoyFile = "envoy.yaml"

	// extAuthzFilter is the canonical name of the ext_authz HTTP filter. The
	// filter stores a Check response's dynamic_metadata under this namespace
	// whatever the filter is called in the chain, and per-route configuration
	// is looked up by the filter's configured name; the demo uses the same
	// string for both.
	extAuthzFilter = "envoy.filters.http.ext_authz"

	// authzHealthService is the grpc.health.v1 service name Flow Lock reports
	// for its Check service.
	authzHealthService = "envoy.service.auth.v3.Authorization"

	// maxCheckTimeout bounds the ext_authz timeout: every request waits for
	// the Check, so a longer timeout is an outage when Flow Lock hangs.
	maxCheckTimeout = time.Second
)

// loadBootstrap reads an Envoy bootstrap the way Envoy reads a YAML config
// file: YAML is converted to JSON and the JSON is parsed as proto3 JSON into
// envoy.config.bootstrap.v3.Bootstrap, rejecting unknown fields (Envoy's
// static bootstrap does not ignore them) and resolving every
// google.protobuf.Any "@type" through the type registry. Duplicate YAML keys
// are rejected too: whichever value a parser keeps, the file is wrong.
func loadBootstrap(doc []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	b := new(bootstrapv3.Bootstrap)
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

// visitFunc is called by walk for each message. typedRoot is true for the
// walked root and for the content of each google.protobuf.Any: the messages
// whose protoc-gen-validate rules are not reached by validating a parent.
type visitFunc func(path string, m protoreflect.Message, typedRoot bool)

// walk calls visit for m and for every message below it, depth first. The
// content of a google.protobuf.Any is unpacked through the global registry
// (the way Envoy resolves typed_config) and walked as a child of the Any,
// with the type name in angle brackets in its path.
func walk(m protoreflect.Message, path string, visit visitFunc) error {
	return walkAt(m, path, true, visit)
}

func walkAt(m protoreflect.Message, path string, typedRoot bool, visit visitFunc) error {
	visit(path, m, typedRoot)
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: unpack %s: %w", path, a.GetTypeUrl(), err)
		}
		r := inner.ProtoReflect()
		return walkAt(r, path+"<"+string(r.Descriptor().Name())+">", true, visit)
	}
	var errs []error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := path + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				errs = append(errs, walkAt(mv.Message(), fmt.Sprintf("%s[%s]", name, k), false, visit))
				return true
			})
		case fd.Message() == nil:
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				errs = append(errs, walkAt(l.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i), false, visit))
			}
		default:
			errs = append(errs, walkAt(v.Message(), name, false, visit))
		}
		return true
	})
	return errors.Join(errs...)
}

// validator is implemented by every message generated with
// protoc-gen-validate (all Envoy API messages).
type validator interface{ ValidateAll() error }

// envoyStartupErrors reports what Envoy itself refuses when it loads the
// bootstrap:
//   - protoc-gen-validate rules, on the bootstrap and on the content of every
//     typed_config (Bootstrap.ValidateAll does not look inside an Any; Envoy
//     validates each extension's config when it instantiates the extension);
//   - negative or overlong durations anywhere in the config;
//   - deprecated fields and enum values (Envoy warns, or refuses them when
//     they are disallowed by default; this config must use neither);
//   - clusters named by a route, an Envoy gRPC service or an HTTP URI that
//     are not defined, and duplicate cluster or listener names;
//   - an HTTP filter chain whose last filter is not the router, or that has
//     the router anywhere else.
func envoyStartupErrors(b *bootstrapv3.Bootstrap) error {
	var errs []error
	clusters := make(map[string]bool)
	for _, c := range b.GetStaticResources().GetClusters() {
		if clusters[c.GetName()] {
			errs = append(errs, fmt.Errorf("duplicate cluster name %q", c.GetName()))
		}
		clusters[c.GetName()] = true
	}
	listeners := make(map[string]bool)
	for _, l := range b.GetStaticResources().GetListeners() {
		if listeners[l.GetName()] {
			errs = append(errs, fmt.Errorf("duplicate listener name %q", l.GetName()))
		}
		listeners[l.GetName()] = true
	}
	ref := func(path, kind, name string) {
		if name != "" && !clusters[name] {
			errs = append(errs, fmt.Errorf("%s: unknown %s cluster %q", path, kind, name))
		}
	}
	err := walk(b.ProtoReflect(), "bootstrap", func(path string, m protoreflect.Message, typedRoot bool) {
		if v, ok := m.Interface().(validator); ok && typedRoot {
			if err := v.ValidateAll(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", path, err))
			}
		}
		errs = append(errs, deprecatedUses(path, m)...)
		switch x := m.Interface().(type) {
		case *routev3.RouteAction:
			ref(path, "route", x.GetCluster())
			for _, w := range x.GetWeightedClusters().GetClusters() {
				ref(path, "route", w.GetName())
			}
		case *corev3.GrpcService_EnvoyGrpc:
			ref(path, "gRPC client", x.GetClusterName())
		case *corev3.HttpUri:
			ref(path, "HTTP service", x.GetCluster())
		case *hcmv3.HttpConnectionManager:
			errs = append(errs, routerLast(path, x.GetHttpFilters())...)
		case *durationpb.Duration:
			if err := envoyDuration(x); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", path, err))
			}
		}
	})
	errs = append(errs, err)
	return errors.Join(errs...)
}

// envoyDuration applies the range check Envoy makes on every
// google.protobuf.Duration of a config: no negative durations, and none too
// long to be counted in milliseconds in an int64.
func envoyDuration(d *durationpb.Duration) error {
	const maxSeconds = 9223372036 // math.MaxInt64 milliseconds
	switch {
	case d.GetSeconds() < 0 || d.GetNanos() < 0:
		return fmt.Errorf("invalid duration: expected positive duration: seconds: %d nanos: %d", d.GetSeconds(), d.GetNanos())
	case d.GetSeconds() > maxSeconds:
		return fmt.Errorf("invalid duration: out of range: seconds: %d", d.GetSeconds())
	}
	return nil
}

// deprecatedUses reports fields of m (not of its children) that are set and
// marked deprecated, and enum values marked deprecated.
func deprecatedUses(path string, m protoreflect.Message) []error {
	var errs []error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
			errs = append(errs, fmt.Errorf("%s: uses deprecated field %s", path, fd.FullName()))
		}
		if fd.Kind() != protoreflect.EnumKind || fd.IsMap() {
			return true
		}
		check := func(n protoreflect.EnumNumber) {
			ev := fd.Enum().Values().ByNumber(n)
			if ev == nil {
				return
			}
			if opts, ok := ev.Options().(*descriptorpb.EnumValueOptions); ok && opts.GetDeprecated() {
				errs = append(errs, fmt.Errorf("%s.%s: uses deprecated value %s.%s", path, fd.Name(), fd.Enum().FullName(), ev.Name()))
			}
		}
		if fd.IsList() {
			for i := range v.List().Len() {
				check(v.List().Get(i).Enum())
			}
		} else {
			check(v.Enum())
		}
		return true
	})
	return errs
}

// routerLast reports the errors Envoy gives for an HTTP filter chain whose
// terminal filter (the router) is missing, misplaced or repeated.
func routerLast(path string, filters []*hcmv3.HttpFilter) []error {
	if len(filters) == 0 {
		return []error{fmt.Errorf("%s: no HTTP filters: the router must be the last filter in a http filter chain", path)}
	}
	var errs []error
	for i, f := range filters {
		last := i == len(filters)-1
		switch isRouter := f.GetTypedConfig().MessageIs((*routerv3.Router)(nil)); {
		case isRouter && !last:
			errs = append(errs, fmt.Errorf("%s: terminal filter named %s must be the last filter in a http filter chain", path, f.GetName()))
		case !isRouter && last:
			errs = append(errs, fmt.Errorf("%s: non-terminal filter named %s is the last filter in a http filter chain", path, f.GetName()))
		}
	}
	return errs
}

// envoyFacts are the settings of a bootstrap that other deployment files must
// agree with.
type envoyFacts struct {
	xffTrustedHops uint32 // HTTP connection manager xff_num_trusted_hops
	authzHosts     string // the ext_authz cluster's endpoints, "host:port,host:port"
	upstreamHost   string
	upstreamPort   uint32
	listenerPort   uint32
	authzTLS       bool // the ext_authz cluster has a TLS transport_socket
}

// flowlockPolicyErrors reports deviations from what Flow Lock needs of an
// Envoy in front of it. Envoy accepts every one of these mistakes and fails
// later, at run time or under load:
//   - the admin interface must listen on loopback only;
//   - each HTTP connection manager uses use_remote_address, has exactly one
//     ext_authz filter under its canonical name, and logs Flow Lock's score
//     and reason from that filter's dynamic metadata;
//   - ext_authz calls a defined Envoy gRPC cluster with the v3 transport, a
//     short timeout and failure_mode_allow, without body or peer certificate;
//   - that cluster speaks HTTP/2, is actively gRPC-health-checked, has a short
//     connect timeout and no panic mode;
//   - typed_per_filter_config keys name a filter of the chain, and /healthz
//     is not sent to Flow Lock.
func flowlockPolicyErrors(b *bootstrapv3.Bootstrap) (envoyFacts, error) {
	var facts envoyFacts
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if a, err := netip.ParseAddr(b.GetAdmin().GetAddress().GetSocketAddress().GetAddress()); err != nil || !a.IsLoopback() {
		bad("admin: must listen on a loopback address, not %q", b.GetAdmin().GetAddress().GetSocketAddress().GetAddress())
	}
	clusters := make(map[string]*clusterv3.Cluster)
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}

	hcms := 0
	for _, l := range b.GetStaticResources().GetListeners() {
		facts.listenerPort = l.GetAddress().GetSocketAddress().GetPortValue()
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := new(hcmv3.HttpConnectionManager)
				if !f.GetTypedConfig().MessageIs(hcm) {
					continue
				}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					bad("listener %s: %v", l.GetName(), err)
					continue
				}
				hcms++
				where := fmt.Sprintf("listener %s", l.GetName())
				facts.xffTrustedHops = hcm.GetXffNumTrustedHops()
				if !hcm.GetUseRemoteAddress().GetValue() {
					bad("%s: use_remote_address must be true: Envoy is the edge and must take the client address from the connection", where)
				}
				authz, err := hcmExtAuthz(hcm)
				if err != nil {
					bad("%s: %v", where, err)
					continue
				}
				errs = append(errs, extAuthzErrors(where, authz, clusters, &facts)...)
				errs = append(errs, accessLogErrors(where, hcm)...)
				errs = append(errs, perRouteErrors(where, hcm, clusters, &facts)...)
				errs = append(errs, honeypotRouteErrors(where, hcm, authz, clusters)...)
			}
		}
	}
	if hcms == 0 {
		bad("no listener has an HTTP connection manager")
	}
	return facts, errors.Join(errs...)
}

// hcmExtAuthz returns the one ext_authz filter of hcm.
func hcmExtAuthz(hcm *hcmv3.HttpConnectionManager) (*extauthzv3.ExtAuthz, error) {
	var found []*extauthzv3.ExtAuthz
	for _, f := range hcm.GetHttpFilters() {
		a := new(extauthzv3.ExtAuthz)
		if !f.GetTypedConfig().MessageIs(a) {
			continue
		}
		if f.GetName() != extAuthzFilter {
			return nil, fmt.Errorf("ext_authz filter is named %q; name it %s so that per-route config and logs find it", f.GetName(), extAuthzFilter)
		}
		if err := f.GetTypedConfig().UnmarshalTo(a); err != nil {
			return nil, err
		}
		found = append(found, a)
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("want exactly one ext_authz HTTP filter, found %d", len(found))
	}
	return found[0], nil
}

func extAuthzErrors(where string, a *extauthzv3.ExtAuthz, clusters map[string]*clusterv3.Cluster, facts *envoyFacts) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(where+": ext_authz: "+format, args...))
	}
	if a.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		bad("transport_api_version must be V3, got %v", a.GetTransportApiVersion())
	}
	if !a.GetFailureModeAllow() {
		bad("failure_mode_allow must be true: a behaviour filter must fail open")
	}
	if a.GetIncludePeerCertificate() {
		bad("include_peer_certificate must be false: Flow Lock does not use it")
	}
	if a.GetWithRequestBody() != nil {
		bad("with_request_body must be absent: Flow Lock never reads the body")
	}
	grpc := a.GetGrpcService()
	if grpc == nil {
		bad("must use grpc_service (Flow Lock's Check is gRPC)")
		return errs
	}
	switch d := grpc.GetTimeout(); {
	case d == nil:
		bad("grpc_service.timeout must be set (the implicit default hides the latency budget)")
	case d.AsDuration() <= 0 || d.AsDuration() > maxCheckTimeout:
		bad("grpc_service.timeout %v must be in (0, %v]", d.AsDuration(), maxCheckTimeout)
	}
	name := grpc.GetEnvoyGrpc().GetClusterName()
	if name == "" {
		bad("grpc_service must use envoy_grpc with a cluster_name")
		return errs
	}
	c := clusters[name]
	if c == nil {
		bad("cluster %q is not defined", name)
		return errs
	}
	return append(errs, authzClusterErrors(where, c, facts)...)
}

func authzClusterErrors(where string, c *clusterv3.Cluster, facts *envoyFacts) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(where+": cluster "+c.GetName()+": "+format, args...))
	}
	opts := new(upstreamhttpv3.HttpProtocolOptions)
	a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if a == nil || a.UnmarshalTo(opts) != nil || opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		bad("must speak HTTP/2 to Flow Lock (typed_extension_protocol_options HttpProtocolOptions explicit_http_config.http2_protocol_options)")
	}
	if d := c.GetConnectTimeout(); d == nil || d.AsDuration() > maxCheckTimeout {
		bad("connect_timeout must be set and at most %v", maxCheckTimeout)
	}
	if p := c.GetCommonLbConfig().GetHealthyPanicThreshold(); p == nil || p.GetValue() != 0 {
		bad("common_lb_config.healthy_panic_threshold must be 0, or Checks keep going to hosts known to be down")
	}
	grpcHC := false
	for _, hc := range c.GetHealthChecks() {
		if g := hc.GetGrpcHealthCheck(); g != nil && (g.GetServiceName() == authzHealthService || g.GetServiceName() == "") {
			grpcHC = true
		}
	}
	if !grpcHC {
		bad("needs an active gRPC health check (grpc_health_check, service_name %s)", authzHealthService)
	}
	var hosts []string
	for _, ep := range c.GetLoadAssignment().GetEndpoints() {
		for _, lb := range ep.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			hosts = append(hosts, net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
		}
	}
	if ts := c.GetTransportSocket(); ts != nil {
		tlsCtx := new(tlsv3.UpstreamTlsContext)
		if ts.GetTypedConfig().UnmarshalTo(tlsCtx) != nil {
			bad("transport_socket must be TLS (UpstreamTlsContext) to match --grpc-tls-cert")
			return errs
		}
		facts.authzTLS = true
		ctx := tlsCtx.GetCommonTlsContext()
		if !slices.Contains(ctx.GetAlpnProtocols(), "h2") {
			bad("transport_socket: common_tls_context.alpn_protocols must offer h2: gRPC servers refuse TLS without it, and fail-open would hide that")
		}
		if ctx.GetValidationContext().GetTrustedCa() == nil && ctx.GetValidationContextSdsSecretConfig() == nil {
			bad("transport_socket: common_tls_context.validation_context.trusted_ca must be set, or Envoy believes any server")
		}
		if len(ctx.GetTlsCertificates()) == 0 && len(ctx.GetTlsCertificateSdsSecretConfigs()) == 0 {
			bad("transport_socket: common_tls_context must present a client certificate for --grpc-client-ca")
		}
	}
	facts.authzHosts = strings.Join(hosts, ",")
	return errs
}

// accessLogErrors checks that an access log of hcm prints Flow Lock's score
// and reason.
func accessLogErrors(where string, hcm *hcmv3.HttpConnectionManager) []error {
	var text strings.Builder
	for _, al := range hcm.GetAccessLog() {
		inner, err := al.GetTypedConfig().UnmarshalNew()
		if err != nil {
			return []error{fmt.Errorf("%s: access_log %s: %w", where, al.GetName(), err)}
		}
		js, err := protojson.Marshal(inner)
		if err != nil {
			return []error{fmt.Errorf("%s: access_log %s: %w", where, al.GetName(), err)}
		}
		text.Write(js)
	}
	var errs []error
	for _, key := range []string{"flowlock_score", "flowlock_reason"} {
		op := "%DYNAMIC_METADATA(" + extAuthzFilter + ":" + key + ")%"
		if !strings.Contains(text.String(), op) {
			errs = append(errs, fmt.Errorf("%s: no access log prints %s", where, op))
		}
	}
	return errs
}

// perRouteErrors checks typed_per_filter_config keys against the filter
// chain (Envoy accepts a key that names no filter and silently ignores the
// config) and that /healthz is not sent to Flow Lock. It also records the
// upstream of the catch-all route.
func perRouteErrors(where string, hcm *hcmv3.HttpConnectionManager, clusters map[string]*clusterv3.Cluster, facts *envoyFacts) []error {
	var errs []error
	names := make(map[string]bool)
	for _, f := range hcm.GetHttpFilters() {
		names[f.GetName()] = true
	}
	keys := func(path string, m map[string]*anypb.Any) {
		for k := range m {
			if !names[k] {
				errs = append(errs, fmt.Errorf("%s: %s: typed_per_filter_config key %q names no HTTP filter of the chain, so the config is ignored", where, path, k))
			}
		}
	}
	healthzOff := false
	err := walk(hcm.GetRouteConfig().ProtoReflect(), "route_config", func(path string, m protoreflect.Message, _ bool) {
		switch x := m.Interface().(type) {
		case *routev3.VirtualHost:
			keys(path, x.GetTypedPerFilterConfig())
		case *routev3.WeightedCluster_ClusterWeight:
			keys(path, x.GetTypedPerFilterConfig())
		case *routev3.Route:
			keys(path, x.GetTypedPerFilterConfig())
			if x.GetMatch().GetPath() == "/healthz" {
				per := new(extauthzv3.ExtAuthzPerRoute)
				if a := x.GetTypedPerFilterConfig()[extAuthzFilter]; a != nil && a.UnmarshalTo(per) == nil && per.GetDisabled() {
					healthzOff = true
				}
			}
			if x.GetMatch().GetPrefix() == "/" {
				c := clusters[x.GetRoute().GetCluster()]
				eps := c.GetLoadAssignment().GetEndpoints()
				if len(eps) > 0 && len(eps[0].GetLbEndpoints()) > 0 {
					sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
					facts.upstreamHost, facts.upstreamPort = sa.GetAddress(), sa.GetPortValue()
				}
			}
		}
	})
	if err != nil {
		errs = append(errs, err)
	}
	if !healthzOff {
		errs = append(errs, fmt.Errorf("%s: route /healthz must disable %s (ExtAuthzPerRoute disabled: true)", where, extAuthzFilter))
	}
	return errs
}

func readEnvoyFile(t *testing.T) []byte {
	t.Helper()
	doc, err := os.ReadFile(envoyFile)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// loadDemoEnvoy loads, validates and checks deploy/envoy.yaml.
func loadDemoEnvoy(t *testing.T) envoyFacts {
	t.Helper()
	b, err := loadBootstrap(readEnvoyFile(t))
	if err != nil {
		t.Fatalf("%s: %v", envoyFile, err)
	}
	if err := envoyStartupErrors(b); err != nil {
		t.Fatalf("%s: Envoy would refuse it:\n%v", envoyFile, err)
	}
	facts, err := flowlockPolicyErrors(b)
	if err != nil {
		t.Fatalf("%s: Flow Lock settings:\n%v", envoyFile, err)
	}
	return facts
}

func TestEnvoyBootstrap(t *testing.T) {
	facts := loadDemoEnvoy(t)
	want := envoyFacts{
		xffTrustedHops: 0,
		authzHosts:     "flowlock-1:9191,flowlock-2:9191",
		upstreamHost:   "sample-api",
		upstreamPort:   8081,
		listenerPort:   8000,
	}
	if facts != want {
		t.Errorf("facts = %+v, want %+v", facts, want)
	}
}

// TestEnvoyBootstrapTypedConfigsValidated makes sure the walk reached every
// typed_config of the demo, so the checks above cannot pass vacuously.
func TestEnvoyBootstrapTypedConfigsValidated(t *testing.T) {
	b, err := loadBootstrap(readEnvoyFile(t))
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[protoreflect.FullName]int)
	err = walk(b.ProtoReflect(), "bootstrap", func(_ string, m protoreflect.Message, typedRoot bool) {
		if typedRoot {
			got[m.Descriptor().FullName()]++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []protoreflect.FullName{
		"envoy.config.bootstrap.v3.Bootstrap",
		"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
		"envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
		"envoy.extensions.filters.http.router.v3.Router",
		"envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
		"envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
	} {
		if got[name] == 0 {
			t.Errorf("walk did not reach a %s; reached %v", name, got)
		}
		if _, ok := protoMessage(name).(validator); !ok {
			t.Errorf("%s has no ValidateAll method", name)
		}
	}
}

func protoMessage(name protoreflect.FullName) proto.Message {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
	if err != nil {
		return nil
	}
	return mt.New().Interface()
}

// brokenCopy is one mutation of the demo bootstrap and where it must be
// caught.
type brokenCopy struct {
	name string
	// Exactly one of old/new (a text edit; old must occur exactly once in
	// the file) and tree (an edit of the parsed bootstrap) is set.
	old, new string
	tree     func(t *testing.T, b *bootstrapv3.Bootstrap)
	// stage that must reject the copy: "load" (YAML/proto parse),
	// "envoy" (envoyStartupErrors) or "policy" (flowlockPolicyErrors). The
	// stages before it must accept the copy, which shows where the mistake
	// would surface in real life.
	stage   string
	wantErr string
}

var brokenCopies = []brokenCopy{
	{
		name:    "unknown field",
		old:     "failure_mode_allow: true",
		new:     "failure_mode_allows: true",
		stage:   "load",
		wantErr: `unknown field "failure_mode_allows"`,
	},
	{
		name: "unknown field inside the router typed_config",
		old:  "router.v3.Router\n",
		new: "router.v3.Router\n" +
			"              suppress_envoy_header: true\n",
		stage:   "load",
		wantErr: `unknown field "suppress_envoy_header"`,
	},
	{
		name:    "typed_config of a type Envoy does not know",
		old:     "router.v3.Router\n",
		new:     "router.v3.Routr\n",
		stage:   "load",
		wantErr: "envoy.extensions.filters.http.router.v3.Routr",
	},
	{
		name:    "bad enum value",
		old:     "transport_api_version: V3",
		new:     "transport_api_version: V4",
		stage:   "load",
		wantErr: `invalid value for enum field transportApiVersion: "V4"`,
	},
	{
		name:    "duplicate YAML key",
		old:     "              stat_prefix: flowlock\n",
		new:     "              stat_prefix: flowlock\n              stat_prefix: authz\n",
		stage:   "load",
		wantErr: `"stat_prefix" already set in map`,
	},
	{
		name:    "deprecated enum value",
		old:     "transport_api_version: V3",
		new:     "transport_api_version: V2",
		stage:   "envoy",
		wantErr: "uses deprecated value envoy.config.core.v3.ApiVersion.V2",
	},
	{
		name:    "required field empty inside typed_config: ext_authz cluster_name",
		old:     "envoy_grpc:\n                  cluster_name: flowlock\n",
		new:     "envoy_grpc:\n                  cluster_name: \"\"\n",
		stage:   "envoy",
		wantErr: "invalid GrpcService_EnvoyGrpc.ClusterName: value length must be at least 1 runes",
	},
	{
		name:    "required field missing: health check threshold",
		old:     "      healthy_threshold: 1\n",
		new:     "",
		stage:   "envoy",
		wantErr: "invalid HealthCheck.HealthyThreshold: value is required",
	},
	{
		name:    "out-of-range value inside typed_config: ext_authz timeout",
		old:     "timeout: 0.25s\n              # Fail OPEN.",
		new:     "timeout: -1s\n              # Fail OPEN.",
		stage:   "envoy",
		wantErr: "invalid duration: expected positive duration: seconds: -1",
	},
	{
		name:    "route to a missing cluster",
		old:     "- match: { prefix: / }\n                route: { cluster: sample_api }",
		new:     "- match: { prefix: / }\n                route: { cluster: sample_apj }",
		stage:   "envoy",
		wantErr: `unknown route cluster "sample_apj"`,
	},
	{
		name:    "ext_authz to a missing cluster",
		old:     "envoy_grpc:\n                  cluster_name: flowlock\n",
		new:     "envoy_grpc:\n                  cluster_name: flowlok\n",
		stage:   "envoy",
		wantErr: `unknown gRPC client cluster "flowlok"`,
	},
	{
		name:    "duplicate cluster name",
		old:     "\n  - name: sample_api\n",
		new:     "\n  - name: flowlock\n",
		stage:   "envoy",
		wantErr: `duplicate cluster name "flowlock"`,
	},
	{
		name: "duplicate listener name",
		tree: func(t *testing.T, b *bootstrapv3.Bootstrap) {
			sr := b.GetStaticResources()
			l := proto.Clone(sr.GetListeners()[0]).(*listenerv3.Listener)
			l.GetAddress().GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 8001}
			sr.Listeners = append(sr.Listeners, l)
		},
		stage:   "envoy",
		wantErr: `duplicate listener name "ingress_http"`,
	},
	{
		name: "router not last",
		tree: func(t *testing.T, b *bootstrapv3.Bootstrap) {
			editHCM(t, b, func(h *hcmv3.HttpConnectionManager) {
				f := h.HttpFilters
				f[0], f[len(f)-1] = f[len(f)-1], f[0]
			})
		},
		stage:   "envoy",
		wantErr: "terminal filter named envoy.filters.http.router must be the last filter in a http filter chain",
	},
	{
		name:    "fail closed",
		old:     "failure_mode_allow: true",
		new:     "failure_mode_allow: false",
		stage:   "policy",
		wantErr: "failure_mode_allow must be true",
	},
	{
		name:    "long ext_authz timeout",
		old:     "timeout: 0.25s\n              # Fail OPEN.",
		new:     "timeout: 5s\n              # Fail OPEN.",
		stage:   "policy",
		wantErr: "grpc_service.timeout 5s must be in (0, 1s]",
	},
	{
		name:    "request body sent to Flow Lock",
		old:     "include_peer_certificate: false\n",
		new:     "include_peer_certificate: false\n              with_request_body: { max_request_bytes: 8192 }\n",
		stage:   "policy",
		wantErr: "with_request_body must be absent",
	},
	{
		name:    "peer certificate sent to Flow Lock",
		old:     "include_peer_certificate: false",
		new:     "include_peer_certificate: true",
		stage:   "policy",
		wantErr: "include_peer_certificate must be false",
	},
	{
		name: "ext_authz cluster without HTTP/2",
		tree: func(t *testing.T, b *bootstrapv3.Bootstrap) {
			clusterNamed(t, b, "flowlock").TypedExtensionProtocolOptions = nil
		},
		stage:   "policy",
		wantErr: "cluster flowlock: must speak HTTP/2",
	},
	{
		name: "ext_authz cluster without health checks",
		tree: func(t *testing.T, b *bootstrapv3.Bootstrap) {
			clusterNamed(t, b, "flowlock").HealthChecks = nil
		},
		stage:   "policy",
		wantErr: "needs an active gRPC health check",
	},
	{
		name: "ext_authz cluster in panic mode",
		tree: func(t *testing.T, b *bootstrapv3.Bootstrap) {
			clusterNamed(t, b, "flowlock").CommonLbConfig = nil
		},
		stage:   "policy",
		wantErr: "healthy_panic_threshold must be 0",
	},
	{
		name:    "per-route key that names no filter",
		old:     "typed_per_filter_config:\n                  envoy.filters.http.ext_authz:",
		new:     "typed_per_filter_config:\n                  envoy.filters.http.extauthz:",
		stage:   "policy",
		wantErr: `typed_per_filter_config key "envoy.filters.http.extauthz" names no HTTP filter`,
	},
	{
		name:    "access log without the score",
		old:     "flowlock_score: \"%DYNAMIC_METADATA(envoy.filters.http.ext_authz:flowlock_score)%\"",
		new:     "flowlock_score: \"%DYNAMIC_METADATA(envoy.filters.http.ext_authz:score)%\"",
		stage:   "policy",
		wantErr: "no access log prints %DYNAMIC_METADATA(envoy.filters.http.ext_authz:flowlock_score)%",
	},
	{
		name:    "client address from headers",
		old:     "use_remote_address: true",
		new:     "use_remote_address: false",
		stage:   "policy",
		wantErr: "use_remote_address must be true",
	},
	{
		name:    "admin on all interfaces",
		old:     "address: 127.0.0.1, port_value: 9901",
		new:     "address: 0.0.0.0, port_value: 9901",
		stage:   "policy",
		wantErr: `admin: must listen on a loopback address, not "0.0.0.0"`,
	},
}

func TestEnvoyBootstrapRejectsBrokenCopies(t *testing.T) {
	orig := string(readEnvoyFile(t))
	for _, tc := range brokenCopies {
		t.Run(tc.name, func(t *testing.T) {
			doc := orig
			if tc.tree == nil {
				if n := strings.Count(orig, tc.old); n != 1 {
					t.Fatalf("%q occurs %d times in %s, want 1: update the mutation", tc.old, n, envoyFile)
				}
				doc = strings.Replace(orig, tc.old, tc.new, 1)
			}
			b, err := loadBootstrap([]byte(doc))
			if tc.stage == "load" {
				checkRejected(t, "load", err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("load: %v (want the copy to load and fail in stage %s)", err, tc.stage)
			}
			if tc.tree != nil {
				tc.tree(t, b)
			}
			err = envoyStartupErrors(b)
			if tc.stage == "envoy" {
				checkRejected(t, "envoy", err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("envoy: %v (want Envoy to accept the copy and the policy to reject it)", err)
			}
			_, err = flowlockPolicyErrors(b)
			checkRejected(t, "policy", err, tc.wantErr)
		})
	}
}

// TestEnvoyBootstrapValidateAllMissesTypedConfig shows why the checks walk
// into typed_config: the generated Bootstrap.ValidateAll accepts an empty
// cluster_name inside the ext_authz filter, Envoy does not.
func TestEnvoyBootstrapValidateAllMissesTypedConfig(t *testing.T) {
	doc := strings.Replace(string(readEnvoyFile(t)),
		"envoy_grpc:\n                  cluster_name: flowlock\n",
		"envoy_grpc:\n                  cluster_name: \"\"\n", 1)
	b, err := loadBootstrap([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("Bootstrap.ValidateAll() = %v; the premise of this test no longer holds", err)
	}
	if err := envoyStartupErrors(b); err == nil {
		t.Fatal("envoyStartupErrors accepted an empty ext_authz cluster_name")
	}
}

func checkRejected(t *testing.T, stage string, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s accepted the broken copy, want an error containing %q", stage, want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("%s error = %v\nwant it to contain %q", stage, err, want)
	}
	t.Logf("%s rejects it: %v", stage, firstLine(err.Error(), want))
}

// firstLine returns the line of a joined error that contains want.
func firstLine(s, want string) string {
	for line := range strings.Lines(s) {
		if strings.Contains(line, want) {
			return strings.TrimSpace(line)
		}
	}
	return s
}

// editHCM lets edit change the HTTP connection manager of the first listener
// and packs it back into its typed_config.
func editHCM(t *testing.T, b *bootstrapv3.Bootstrap, edit func(*hcmv3.HttpConnectionManager)) {
	t.Helper()
	f := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0]
	hcm := new(hcmv3.HttpConnectionManager)
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	edit(hcm)
	a, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
}

func clusterNamed(t *testing.T, b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	t.Helper()
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("no cluster %q", name)
	return nil
}

// withTLSExample returns the demo bootstrap with the commented
// transport_socket example of the flowlock cluster uncommented, as an
// operator would, after edit has changed the commented text.
func withTLSExample(t *testing.T, edit func(string) string) string {
	t.Helper()
	return uncommentExamples(t, string(readEnvoyFile(t)), "transport-socket-example", edit)
}

// TestEnvoyTransportSocketExample validates the commented mutual-TLS
// example for real: uncommented, the bootstrap must load, pass Envoy's
// startup checks and Flow Lock's, and put TLS on the flowlock cluster.
func TestEnvoyTransportSocketExample(t *testing.T) {
	b, err := loadBootstrap([]byte(withTLSExample(t, func(s string) string { return s })))
	if err != nil {
		t.Fatalf("the uncommented example does not load: %v", err)
	}
	if err := envoyStartupErrors(b); err != nil {
		t.Fatalf("Envoy would refuse the uncommented example:\n%v", err)
	}
	facts, err := flowlockPolicyErrors(b)
	if err != nil {
		t.Fatalf("the uncommented example breaks Flow Lock's settings:\n%v", err)
	}
	if !facts.authzTLS {
		t.Fatal("the uncommented example does not put TLS on the flowlock cluster")
	}
	tlsCtx := new(tlsv3.UpstreamTlsContext)
	if err := clusterNamed(t, b, "flowlock").GetTransportSocket().GetTypedConfig().UnmarshalTo(tlsCtx); err != nil {
		t.Fatal(err)
	}
	if got := tlsCtx.GetCommonTlsContext().GetTlsCertificates()[0].GetCertificateChain().GetFilename(); got == "" {
		t.Error("the example presents no client certificate file")
	}
	if facts := loadDemoEnvoy(t); facts.authzTLS {
		t.Error("the shipped demo (plaintext Flow Lock) has TLS on the flowlock cluster; the example must stay commented")
	}
}

// TestEnvoyTransportSocketExampleMistakes shows that the policy catches
// the mistakes an operator could make when adapting the example.
func TestEnvoyTransportSocketExampleMistakes(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"no ALPN", "    #       alpn_protocols: [h2]\n", "", "alpn_protocols must offer h2"},
		{"server not verified", "validation_context:", "validation_context_unused:", "unknown field"},
		{"no trusted CA", "    #         trusted_ca: { filename: /etc/envoy/flowlock/ca.pem }\n", "", "trusted_ca must be set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := withTLSExample(t, func(s string) string {
				if strings.Count(s, tc.old) != 1 {
					t.Fatalf("%q occurs %d times in the example, want 1", tc.old, strings.Count(s, tc.old))
				}
				return strings.Replace(s, tc.old, tc.new, 1)
			})
			b, err := loadBootstrap([]byte(doc))
			if err == nil {
				if err = envoyStartupErrors(b); err == nil {
					_, err = flowlockPolicyErrors(b)
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
