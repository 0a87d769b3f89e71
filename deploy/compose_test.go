package deploy

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/traffic"
)

const composeFile = "docker-compose.yml"

// loadCompose loads a compose file the way `docker compose` does, with
// compose-go: schema validation, interpolation from env (and nothing else:
// the test does not depend on the caller's shell), normalization, and the
// consistency checks (depends_on targets, named volumes, networks). The
// project directory is the repository root, so relative paths resolve
// there whichever file is loaded.
func loadCompose(t *testing.T, file string, env map[string]string, profiles ...string) (*types.Project, error) {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(file) {
		file = filepath.Join(root, file)
	}
	var kv []string
	for k, v := range env {
		kv = append(kv, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(kv),
		cli.WithProfiles(profiles),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(t.Context())
}

// composeFacts are the values of the compose file that the test compares
// across files.
type composeFacts struct {
	flowlock config.Config // flowlock-authz settings of the first replica
	replicas []string      // the Flow Lock services, sorted
}

// flowlockReplicas returns the services that run flowlock-authz: built from
// the flowlock stage, with the image's entrypoint (the attacker runs
// flowlock-sim from the same image).
func flowlockReplicas(p *types.Project) []string {
	var names []string
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if s.Build != nil && s.Build.Target == "flowlock" && len(s.Entrypoint) == 0 {
			names = append(names, name)
		}
	}
	return names
}

// replicaErrors checks one Flow Lock service and returns its settings; ok
// is false when flowlock-authz would refuse them. stateVolumes maps each
// state volume to the replica that uses it.
func replicaErrors(p *types.Project, name string, df *dockerfile, stateVolumes map[string]string, bad func(string, ...any)) (cfg config.Config, ok bool) {
	fl := p.Services[name]
	if len(fl.Command) == 0 || fl.Command[0] != "serve" {
		bad("service %s: command %v, want serve and flags", name, fl.Command)
	}
	getenv := func(k string) string {
		if v := fl.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	cfg, err := config.Load(fl.Command[min(1, len(fl.Command)):], getenv)
	if err != nil {
		bad("service %s: flowlock-authz would refuse its settings: %v", name, err)
		return cfg, false
	}
	dashboard := false
	for _, port := range fl.Ports {
		if port.HostIP != "127.0.0.1" {
			bad("service %s: port %d is published on all interfaces; Flow Lock's ports are for this host only", name, port.Target)
		}
		dashboard = dashboard || port.Target == listenPort(cfg.HTTPAddr) && port.HostIP == "127.0.0.1"
	}
	if !dashboard {
		bad("service %s: dashboard port %d (--http-addr) must be published on 127.0.0.1 only", name, listenPort(cfg.HTTPAddr))
	}
	if cfg.StateFile == "" {
		bad("service %s: no --state-file: quarantines would not survive a restart", name)
	} else {
		dir := filepath.Dir(cfg.StateFile)
		m := mountOf(fl, dir)
		switch {
		case m == nil || m.Type != types.VolumeTypeVolume:
			bad("service %s: --state-file %s is not on a named volume", name, cfg.StateFile)
		case p.Volumes[m.Source].Name == "":
			bad("service %s: volume %s is not declared", name, m.Source)
		case !slices.Contains(df.stage(fl.Build.Target).ownedDirs("65532"), m.Target):
			bad("service %s: volume target %s is not a nonroot-owned directory of the image, so nonroot cannot write the state file", name, m.Target)
		case stateVolumes[m.Source] != "":
			bad("service %s: state volume %s is %s's too: two processes would overwrite one state file", name, m.Source, stateVolumes[m.Source])
		default:
			stateVolumes[m.Source] = name
		}
	}
	if !fl.ReadOnly {
		bad("service %s: read_only must be true (it writes only to its state volume)", name)
	}
	if fl.StopGracePeriod == nil || time.Duration(*fl.StopGracePeriod) <= cfg.ShutdownTimeout {
		bad("service %s: stop_grace_period must exceed --shutdown-timeout (%v)", name, cfg.ShutdownTimeout)
	}
	if !hasHealthcheck(fl, df) || !slices.Equal(fl.HealthCheck.Test, []string{"CMD", "flowlock-authz", "healthcheck"}) {
		bad("service %s: healthcheck must be [CMD flowlock-authz healthcheck], got %v", name, healthTest(fl))
	}
	return cfg, true
}

// sharedStateErrors checks that several replicas share one Redis: Envoy
// spreads a client's Checks over them, and a replica that sees a random
// share of a metronome's requests takes it for a human (issue 13: 17 % of
// bots detected with three replicas instead of 100 %). The Redis is a
// service of the file, not published, persistent (a Redis restarted empty
// would make every replica release every quarantined client), and on a
// network only the replicas share.
func sharedStateErrors(p *types.Project, replicas []string, cfgs map[string]config.Config, bad func(string, ...any)) {
	if len(replicas) < 2 {
		return
	}
	first := replicas[0]
	for _, name := range replicas {
		cfg := cfgs[name]
		switch {
		case cfg.RedisAddr == "":
			bad("service %s: no --redis-addr: with %d Flow Lock replicas behind Envoy, each sees a random share of a client's requests and detection breaks; give every replica the same --redis-addr", name, len(replicas))
		case cfg.RedisAddr != cfgs[first].RedisAddr:
			bad("service %s: --redis-addr %s differs from %s's %s: the replicas must share one Redis", name, cfg.RedisAddr, first, cfgs[first].RedisAddr)
		case cfg.RedisKeyPrefix != cfgs[first].RedisKeyPrefix:
			bad("service %s: --redis-key-prefix %q differs from %s's %q: the replicas would not see each other's keys", name, cfg.RedisKeyPrefix, first, cfgs[first].RedisKeyPrefix)
		}
	}
	addrs := cfgs[first].RedisAddrs()
	if len(addrs) != 1 {
		return // a cluster outside this file: nothing more to check here
	}
	host, port, _ := net.SplitHostPort(addrs[0])
	redis, ok := p.Services[host]
	if !ok {
		bad("--redis-addr %s: no service %s in this file", addrs[0], host)
		return
	}
	if !strings.HasPrefix(redis.Image, "redis:") && !strings.HasPrefix(redis.Image, "valkey/valkey:") {
		bad("service %s: image %q is not the official redis or valkey image", host, redis.Image)
	}
	if want := flagValue(redis.Command, "--port"); want != "" && want != port || want == "" && port != "6379" {
		bad("--redis-addr %s: service %s listens on port %s", addrs[0], host, cmp.Or(want, "6379"))
	}
	if len(redis.Ports) > 0 {
		bad("service %s: publishes ports; Redis holds the quarantine list and takes no password here, keep it unpublished", host)
	}
	if flagValue(redis.Command, "--appendonly") != "yes" || mountOf(redis, "/data") == nil || mountOf(redis, "/data").Type != types.VolumeTypeVolume {
		bad("service %s: needs --appendonly yes and /data on a named volume: a Redis restarted empty would make every replica release every quarantined client", host)
	}
	if flagValue(redis.Command, "--maxmemory-policy") != "noeviction" {
		bad("service %s: --maxmemory-policy must be noeviction: an evicting Redis would drop quarantines", host)
	}
	for _, name := range replicas {
		if !sharesNetwork(p.Services[name], redis) {
			bad("service %s: shares no network with %s", name, host)
		}
	}
	for _, name := range p.ServiceNames() {
		if name != host && !slices.Contains(replicas, name) && sharesNetwork(p.Services[name], redis) {
			bad("service %s can reach %s: only the Flow Lock replicas may (anyone who reaches Redis can quarantine or release any client)", name, host)
		}
	}
}

// sharesNetwork reports whether a and b have a network in common.
func sharesNetwork(a, b types.ServiceConfig) bool {
	for n := range a.Networks {
		if _, ok := b.Networks[n]; ok {
			return true
		}
	}
	return false
}

// composeErrors checks a loaded project against the rest of the repository:
// things compose-go accepts but that would break `docker compose up` or the
// demo. envoy are the facts of deploy/envoy.yaml, df the parsed Dockerfile.
func composeErrors(p *types.Project, envoy envoyFacts, df *dockerfile) (composeFacts, error) {
	var facts composeFacts
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	root, _ := filepath.Abs(repoRoot)

	for _, want := range []string{"envoy", "sample-api"} {
		if _, err := p.GetService(want); err != nil {
			bad("service %s: %v", want, err)
		}
	}
	facts.replicas = flowlockReplicas(p)
	if len(facts.replicas) == 0 {
		bad("no Flow Lock service (build target flowlock running flowlock-authz)")
	}
	if len(errs) > 0 {
		return facts, errors.Join(errs...)
	}

	// Host ports: compose-go accepts the same host port twice; the second
	// container would fail to start.
	hostPorts := make(map[string]string)
	for _, name := range p.ServiceNames() {
		for _, port := range p.Services[name].Ports {
			key := port.HostIP + ":" + port.Published
			if other, ok := hostPorts[key]; ok && port.Published != "" {
				bad("service %s: host port %s is already published by %s", name, key, other)
			}
			hostPorts[key] = name
		}
	}

	for name, s := range p.Services {
		// Images: built here, or pinned to a release.
		if s.Build == nil {
			if !pinnedImage.MatchString(s.Image) {
				bad("service %s: image %q is not pinned to a release tag", name, s.Image)
			}
		} else {
			if filepath.Clean(s.Build.Context) != root {
				bad("service %s: build context %s, want the repository root", name, s.Build.Context)
			}
			if df.stage(s.Build.Target) == nil {
				bad("service %s: build target %q is not a stage of the Dockerfile", name, s.Build.Target)
			}
		}
		// Bind mounts must name files that are in the repository.
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			rel, err := filepath.Rel(root, v.Source)
			if err != nil || strings.HasPrefix(rel, "..") {
				bad("service %s: bind mount %s is outside the repository", name, v.Source)
				continue
			}
			if fi, err := os.Stat(v.Source); err != nil || !fi.Mode().IsRegular() {
				bad("service %s: bind mount source %s does not exist as a file in the repository", name, rel)
			}
			if !v.ReadOnly {
				bad("service %s: bind mount %s must be read_only", name, rel)
			}
		}
		// A service_healthy dependency needs a health check to wait for.
		for dep, d := range s.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				continue
			}
			if ds, err := p.GetService(dep); err == nil && !hasHealthcheck(ds, df) {
				bad("service %s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			}
		}
	}

	// Envoy: the mounted bootstrap is deploy/envoy.yaml, the one validated
	// by envoy_test.go; the published port is its listener.
	envoySvc, _ := p.GetService("envoy")
	if !strings.HasPrefix(envoySvc.Image, "envoyproxy/envoy:") {
		bad("service envoy: image %q is not envoyproxy/envoy", envoySvc.Image)
	}
	cfgPath := flagValue(envoySvc.Command, "--config-path", "-c")
	if m := mountOf(envoySvc, cfgPath); m == nil || m.Source != filepath.Join(root, "deploy", envoyFile) {
		bad("service envoy: --config-path %q is not a mount of deploy/%s", cfgPath, envoyFile)
	}
	if !publishes(envoySvc, envoy.listenerPort, "") {
		bad("service envoy: does not publish its listener port %d", envoy.listenerPort)
	}

	// Flow Lock: each replica's flags are valid for flowlock-authz, its
	// ports and addresses agree with envoy.yaml, its state file is on its
	// own named volume; Envoy's ext_authz cluster lists every replica.
	cfgs := make(map[string]config.Config)
	var endpoints []string
	stateVolumes := make(map[string]string)
	for _, name := range facts.replicas {
		cfg, ok := replicaErrors(p, name, df, stateVolumes, bad)
		if !ok {
			continue
		}
		cfgs[name] = cfg
		endpoints = append(endpoints, net.JoinHostPort(name, strconv.Itoa(int(listenPort(cfg.GRPCAddr)))))
	}
	if len(cfgs) < len(facts.replicas) {
		return facts, errors.Join(errs...)
	}
	facts.flowlock = cfgs[facts.replicas[0]]
	if got := strings.Join(endpoints, ","); envoy.authzHosts != got {
		bad("envoy.yaml sends Checks to %s, but the Flow Lock replicas listen on %s", envoy.authzHosts, got)
	}
	sharedStateErrors(p, facts.replicas, cfgs, bad)

	// sample-api: the upstream envoy.yaml routes to.
	api, _ := p.GetService("sample-api")
	addr := flagValue(api.Command, "--addr", "-addr")
	if envoy.upstreamHost != "sample-api" || envoy.upstreamPort != listenPort(addr) {
		bad("envoy.yaml routes to %s:%d, but sample-api listens on %q", envoy.upstreamHost, envoy.upstreamPort, addr)
	}
	if !hasHealthcheck(api, df) {
		bad("service sample-api: no healthcheck")
	}

	// Prometheus: only with --profile metrics, scraping Flow Lock's HTTP port.
	prom, ok := p.Services["prometheus"]
	if !ok {
		prom, ok = p.DisabledServices["prometheus"]
	}
	switch {
	case !ok:
		bad("no prometheus service")
	case !slices.Equal(prom.Profiles, []string{"metrics"}):
		bad("service prometheus: profiles %v, want [metrics]", prom.Profiles)
	default:
		m := mountOf(prom, "/etc/prometheus/prometheus.yml")
		if m == nil {
			bad("service prometheus: /etc/prometheus/prometheus.yml is not mounted")
			break
		}
		targets, err := prometheusTargets(m.Source)
		if err != nil {
			bad("service prometheus: %v", err)
			break
		}
		for _, name := range facts.replicas {
			want := net.JoinHostPort(name, strconv.Itoa(int(listenPort(cfgs[name].HTTPAddr))))
			if !slices.Contains(targets, want) {
				bad("prometheus scrapes %v, want %s (%s's --http-addr) among them", targets, want, name)
			}
		}
	}
	return facts, errors.Join(errs...)
}

// pinnedImage matches an image reference with an explicit version tag (not
// latest) or a digest.
var pinnedImage = regexp.MustCompile(`^[a-z0-9./-]+(:v?[0-9]+\.[0-9]+\.[0-9]+[A-Za-z0-9._-]*|@sha256:[0-9a-f]{64})$`)

// hasHealthcheck reports whether containers of s are health-checked, by the
// compose file or by the image built for s.
func hasHealthcheck(s types.ServiceConfig, df *dockerfile) bool {
	if s.HealthCheck != nil {
		return !s.HealthCheck.Disable && len(s.HealthCheck.Test) > 0 && s.HealthCheck.Test[0] != "NONE"
	}
	if s.Build != nil {
		if st := df.stage(s.Build.Target); st != nil {
			_, ok := st.last("HEALTHCHECK")
			return ok
		}
	}
	return false
}

func healthTest(s types.ServiceConfig) []string {
	if s.HealthCheck == nil {
		return nil
	}
	return s.HealthCheck.Test
}

// mountOf returns the mount of s whose target is dir or contains it.
func mountOf(s types.ServiceConfig, dir string) *types.ServiceVolumeConfig {
	for i, v := range s.Volumes {
		if dir != "" && (v.Target == dir || strings.HasPrefix(dir, strings.TrimSuffix(v.Target, "/")+"/")) {
			return &s.Volumes[i]
		}
	}
	return nil
}

// publishes reports whether s publishes container port target, on hostIP
// if it is not "".
func publishes(s types.ServiceConfig, target uint32, hostIP string) bool {
	for _, p := range s.Ports {
		if p.Target == target && p.Published == strconv.Itoa(int(target)) && (hostIP == "" || p.HostIP == hostIP) {
			return true
		}
	}
	return false
}

// flagValue returns the value of a flag in argv, given as "--f v" or
// "--f=v" under any of names.
func flagValue(argv []string, names ...string) string {
	for i, a := range argv {
		for _, n := range names {
			if v, ok := strings.CutPrefix(a, n+"="); ok {
				return v
			}
			if a == n && i+1 < len(argv) {
				return argv[i+1]
			}
		}
	}
	return ""
}

// listenPort returns the port of a listen address such as ":9191", or 0.
func listenPort(addr string) uint32 {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return 0
	}
	return uint32(n)
}

// prometheusConfig is the part of prometheus.yml the demo uses. Decoding is
// strict: a misspelt key fails instead of being ignored.
type prometheusConfig struct {
	Global struct {
		ScrapeInterval     string `json:"scrape_interval"`
		EvaluationInterval string `json:"evaluation_interval"`
	} `json:"global"`
	ScrapeConfigs []struct {
		JobName       string `json:"job_name"`
		MetricsPath   string `json:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `json:"targets"`
		} `json:"static_configs"`
	} `json:"scrape_configs"`
}

func prometheusTargets(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var pc prometheusConfig
	if err := sigsyaml.UnmarshalStrict(data, &pc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var targets []string
	for _, sc := range pc.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			return nil, fmt.Errorf("%s: job %s scrapes %s, but Flow Lock serves /metrics", file, sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	return targets, nil
}

func TestCompose(t *testing.T) {
	envoy := loadDemoEnvoy(t)
	df := loadDockerfile(t)

	p, err := loadCompose(t, composeFile, nil)
	if err != nil {
		t.Fatalf("compose-go refuses %s: %v", composeFile, err)
	}
	facts, err := composeErrors(p, envoy, df)
	if err != nil {
		t.Fatalf("%s:\n%v", composeFile, err)
	}
	if got := p.ServiceNames(); !slices.Equal(got, []string{"envoy", "flowlock-1", "flowlock-2", "redis", "sample-api"}) {
		t.Errorf("services without profiles = %v, want envoy, flowlock-1, flowlock-2, redis, sample-api", got)
	}
	// Two replicas behind Envoy, one brain: both on the same Redis.
	if !slices.Equal(facts.replicas, []string{"flowlock-1", "flowlock-2"}) || facts.flowlock.RedisAddr != "redis:6379" {
		t.Errorf("replicas %v sharing %q, want flowlock-1 and flowlock-2 sharing redis:6379", facts.replicas, facts.flowlock.RedisAddr)
	}
	if facts.flowlock.Mode != config.ModeEnforce {
		t.Errorf("default mode = %q, want %q", facts.flowlock.Mode, config.ModeEnforce)
	}
	if facts.flowlock.AdminToken.IsSet() {
		t.Error("an admin token is set with an empty environment; the compose file must not hold one")
	}
	// Envoy is the edge here, so Flow Lock must trust exactly what Envoy
	// trusts: no forwarded-for hops, no proxies.
	if got := facts.flowlock.XFFTrustedHops; uint32(got) != envoy.xffTrustedHops || len(facts.flowlock.TrustedProxies) > 0 {
		t.Errorf("flowlock trusts %d X-Forwarded-For hops and proxies %v; envoy.yaml trusts %d hops",
			got, facts.flowlock.TrustedProxies, envoy.xffTrustedHops)
	}

	t.Run("metrics profile", func(t *testing.T) {
		p, err := loadCompose(t, composeFile, nil, "metrics")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := composeErrors(p, envoy, df); err != nil {
			t.Fatal(err)
		}
		if got := p.ServiceNames(); !slices.Contains(got, "prometheus") {
			t.Errorf("services with --profile metrics = %v, want prometheus among them", got)
		}
	})

	t.Run("attack profile", func(t *testing.T) {
		p, err := loadCompose(t, composeFile, nil, "attack")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := composeErrors(p, envoy, df); err != nil {
			t.Fatal(err)
		}
		a, err := p.GetService("attacker")
		if err != nil {
			t.Fatalf("services with --profile attack: %v", err)
		}
		if len(a.Entrypoint) != 1 || a.Entrypoint[0] != "flowlock-sim" || len(a.Command) == 0 || a.Command[0] != "http" {
			t.Errorf("attacker runs %v %v, want flowlock-sim http", a.Entrypoint, a.Command)
		}
		// It must go through Envoy's listener, the path a real client takes.
		if target, want := flagValue(a.Command, "--target"), fmt.Sprintf("http://envoy:%d", envoy.listenerPort); target != want {
			t.Errorf("attacker --target %q, want %q", target, want)
		}
		names := flagValue(a.Command, "--scenario")
		for _, name := range strings.Split(names, ",") {
			if !slices.ContainsFunc(traffic.Scenarios(), func(s traffic.Scenario) bool { return s.Name == name || s.ID == name }) {
				t.Errorf("attacker --scenario %q: no such flowlock-sim scenario", name)
			}
		}
	})

	t.Run("environment", func(t *testing.T) {
		token := "0123456789abcdef0123"
		p, err := loadCompose(t, composeFile, map[string]string{"FLOWLOCK_MODE": "shadow", "FLOWLOCK_ADMIN_TOKEN": token})
		if err != nil {
			t.Fatal(err)
		}
		facts, err := composeErrors(p, envoy, df)
		if err != nil {
			t.Fatal(err)
		}
		if facts.flowlock.Mode != config.ModeShadow {
			t.Errorf("mode with FLOWLOCK_MODE=shadow = %q", facts.flowlock.Mode)
		}
		if facts.flowlock.AdminToken.Reveal() != token {
			t.Error("FLOWLOCK_ADMIN_TOKEN from the shell does not reach the container")
		}
	})
}

// composeBroken is a mutation of docker-compose.yml: a text edit, and where
// it must be rejected ("compose-go" when loading, "checks" by
// composeErrors after compose-go accepted it).
type composeBroken struct {
	name, old, new string
	stage          string
	wantErr        string
}

var composeBrokenCopies = []composeBroken{
	{
		name:    "unknown key",
		old:     "  stop_grace_period: 20s\n",
		new:     "  stop_grace_perod: 20s\n",
		stage:   "compose-go",
		wantErr: "stop_grace_perod false schema",
	},
	{
		name:    "wrong type",
		old:     "    retries: 5\n    start_period: 10s\n",
		new:     "    retries: five\n    start_period: 10s\n",
		stage:   "compose-go",
		wantErr: `services.flowlock-1.healthcheck.retries: failed to cast to expected type: strconv.Atoi: parsing "five"`,
	},
	{
		name:    "depends_on a missing service",
		old:     "      sample-api:\n        condition: service_healthy\n",
		new:     "      sample-apj:\n        condition: service_healthy\n",
		stage:   "compose-go",
		wantErr: `service "envoy" depends on undefined service "sample-apj"`,
	},
	{
		name:    "undeclared named volume",
		old:     "      - flowlock-2-state:/var/lib/flowlock\n",
		new:     "      - flowlock-2-stat:/var/lib/flowlock\n",
		stage:   "compose-go",
		wantErr: "undefined volume flowlock-2-stat",
	},
	{
		name:    "mounted file missing from the repository",
		old:     "source: ./deploy/envoy.yaml",
		new:     "source: ./deploy/envoy.yml",
		stage:   "checks",
		wantErr: "bind mount source deploy/envoy.yml does not exist",
	},
	{
		name:    "unpinned image",
		old:     "image: envoyproxy/envoy:v1.39.6",
		new:     "image: envoyproxy/envoy:latest",
		stage:   "checks",
		wantErr: `image "envoyproxy/envoy:latest" is not pinned`,
	},
	{
		name:    "envoy listener not published",
		old:     `      - "8000:8000"`,
		new:     `      - "8000:8080"`,
		stage:   "checks",
		wantErr: "does not publish its listener port 8000",
	},
	{
		name:    "flag flowlock-authz does not have",
		old:     "    - --log-format=json\n",
		new:     "    - --log-formt=json\n",
		stage:   "checks",
		wantErr: "flowlock-authz would refuse its settings",
	},
	{
		name:    "gRPC port that envoy.yaml does not call",
		old:     "    - --grpc-addr=:9191\n",
		new:     "    - --grpc-addr=:9192\n",
		stage:   "checks",
		wantErr: "envoy.yaml sends Checks to flowlock-1:9191,flowlock-2:9191, but the Flow Lock replicas listen on flowlock-1:9192,flowlock-2:9192",
	},
	{
		name:    "state file off the volume",
		old:     "--state-file=/var/lib/flowlock/state.json",
		new:     "--state-file=/tmp/state.json",
		stage:   "checks",
		wantErr: "--state-file /tmp/state.json is not on a named volume",
	},
	{
		name:    "dashboard on all interfaces",
		old:     `      - "127.0.0.1:8080:8080"`,
		new:     `      - "8080:8080"`,
		stage:   "checks",
		wantErr: "dashboard port 8080 (--http-addr) must be published on 127.0.0.1 only",
	},
	{
		name:    "healthy dependency without a healthcheck",
		old:     "    test: [\"CMD\", \"flowlock-authz\", \"healthcheck\"]\n",
		new:     "    disable: true\n",
		stage:   "checks",
		wantErr: "envoy waits for flowlock-1 to be healthy, but flowlock-1 has no healthcheck",
	},
	{
		name:    "prometheus outside the metrics profile",
		old:     "    profiles: [metrics]\n",
		new:     "",
		stage:   "checks",
		wantErr: "service prometheus: profiles [], want [metrics]",
	},
	{
		name:    "build target missing from the Dockerfile",
		old:     "      target: sample-api\n",
		new:     "      target: sampleapi\n",
		stage:   "checks",
		wantErr: `build target "sampleapi" is not a stage of the Dockerfile`,
	},
	{
		name:    "one replica without Redis",
		old:     "  flowlock-2:\n    <<: *flowlock\n",
		new:     "  flowlock-2:\n    <<: *flowlock\n    command: [serve, --grpc-addr=:9191, --http-addr=:8080, --state-file=/var/lib/flowlock/state.json]\n",
		stage:   "checks",
		wantErr: "service flowlock-2: no --redis-addr: with 2 Flow Lock replicas behind Envoy",
	},
	{
		name:    "replicas on different key prefixes",
		old:     "  flowlock-2:\n    <<: *flowlock\n",
		new:     "  flowlock-2:\n    <<: *flowlock\n    command: [serve, --grpc-addr=:9191, --http-addr=:8080, --state-file=/var/lib/flowlock/state.json, --redis-addr=redis:6379, --redis-key-prefix=fl2:]\n",
		stage:   "checks",
		wantErr: `service flowlock-2: --redis-key-prefix "fl2:" differs from flowlock-1's "flowlock:"`,
	},
	{
		name:    "replicas on different Redis servers",
		old:     "  flowlock-2:\n    <<: *flowlock\n",
		new:     "  flowlock-2:\n    <<: *flowlock\n    command: [serve, --grpc-addr=:9191, --http-addr=:8080, --state-file=/var/lib/flowlock/state.json, --redis-addr=redis2:6379]\n",
		stage:   "checks",
		wantErr: "service flowlock-2: --redis-addr redis2:6379 differs from flowlock-1's redis:6379",
	},
	{
		name:    "replicas sharing one state volume",
		old:     "      - flowlock-2-state:/var/lib/flowlock\n",
		new:     "      - flowlock-1-state:/var/lib/flowlock\n",
		stage:   "checks",
		wantErr: "service flowlock-2: state volume flowlock-1-state is flowlock-1's too",
	},
	{
		name:    "two replicas on one host port",
		old:     `      - "127.0.0.1:8082:8080"`,
		new:     `      - "127.0.0.1:8080:8080"`,
		stage:   "checks",
		wantErr: "service flowlock-2: host port 127.0.0.1:8080 is already published by flowlock-1",
	},
	{
		name:    "Redis published",
		old:     "    networks: [state]\n",
		new:     "    networks: [state]\n    ports:\n      - \"127.0.0.1:6379:6379\"\n",
		stage:   "checks",
		wantErr: "service redis: publishes ports",
	},
	{
		name:    "Redis reachable from Envoy",
		old:     "    networks: [state]\n",
		new:     "    networks: [state, default]\n",
		stage:   "checks",
		wantErr: "service envoy can reach redis: only the Flow Lock replicas may",
	},
	{
		name:    "Redis without persistence",
		old:     "      - --appendonly\n      - \"yes\"\n",
		new:     "      - --appendonly\n      - \"no\"\n",
		stage:   "checks",
		wantErr: "service redis: needs --appendonly yes and /data on a named volume",
	},
	{
		name:    "Redis that evicts quarantines",
		old:     "      - noeviction\n",
		new:     "      - allkeys-lru\n",
		stage:   "checks",
		wantErr: "--maxmemory-policy must be noeviction",
	},
	{
		name:    "Redis on a floating tag",
		old:     "image: redis:7.4.5",
		new:     "image: redis:latest",
		stage:   "checks",
		wantErr: `image "redis:latest" is not pinned`,
	},
	{
		name:    "stop grace shorter than the drain",
		old:     "  stop_grace_period: 20s\n",
		new:     "  stop_grace_period: 10s\n",
		stage:   "checks",
		wantErr: "stop_grace_period must exceed --shutdown-timeout",
	},
}

func TestComposeRejectsBrokenCopies(t *testing.T) {
	envoy := loadDemoEnvoy(t)
	df := loadDockerfile(t)
	orig, err := os.ReadFile(filepath.Join(repoRoot, composeFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range composeBrokenCopies {
		t.Run(tc.name, func(t *testing.T) {
			if n := strings.Count(string(orig), tc.old); n != 1 {
				t.Fatalf("%q occurs %d times in %s, want 1: update the mutation", tc.old, n, composeFile)
			}
			file := filepath.Join(t.TempDir(), composeFile)
			if err := os.WriteFile(file, []byte(strings.Replace(string(orig), tc.old, tc.new, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := loadCompose(t, file, nil, "metrics")
			if tc.stage == "compose-go" {
				checkRejected(t, "compose-go", err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("compose-go: %v (want it to load and fail the checks)", err)
			}
			_, err = composeErrors(p, envoy, df)
			checkRejected(t, "checks", err, tc.wantErr)
		})
	}
	// The agreement also breaks from Envoy's side: a cluster that sends
	// every Check to one replica leaves the other idle.
	t.Run("Envoy balances over one replica only", func(t *testing.T) {
		one := "        - endpoint:\n            address:\n              socket_address: { address: flowlock-2, port_value: 9191 }\n"
		doc := string(readEnvoyFile(t))
		if n := strings.Count(doc, one); n != 1 {
			t.Fatalf("%q occurs %d times in %s, want 1: update the mutation", one, n, envoyFile)
		}
		b, err := loadBootstrap([]byte(strings.Replace(doc, one, "", 1)))
		if err != nil {
			t.Fatal(err)
		}
		facts, err := flowlockPolicyErrors(b)
		if err != nil {
			t.Fatal(err)
		}
		p, err := loadCompose(t, composeFile, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = composeErrors(p, facts, df)
		checkRejected(t, "checks", err, "envoy.yaml sends Checks to flowlock-1:9191, but the Flow Lock replicas listen on flowlock-1:9191,flowlock-2:9191")
	})
}
