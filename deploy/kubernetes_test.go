package deploy

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/flowlock/flowlock/internal/config"
)

const kubernetesDir = "kubernetes"

// decodeManifest decodes one YAML document into v the way the API server's
// strict field validation (kubectl's default) reads it: YAML converted to
// JSON with duplicate keys refused, then field names matched exactly
// (case-sensitively) and unknown fields refused. encoding/json would accept
// "readOnlyRootFileSystem" for readOnlyRootFilesystem; Kubernetes does not.
func decodeManifest(doc []byte, v any) error {
	js, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	return jsonv2.Unmarshal(js, v, jsonv2.RejectUnknownMembers(true))
}

// splitDocuments splits a multi-document YAML file on "---" lines and drops
// documents that hold only comments.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(data), -1) {
		empty := true
		for line := range strings.Lines(d) {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// The types below are the parts of the Kubernetes API the manifests use,
// with their exact JSON names. Decoding is strict, so a field the manifests
// start to use must be added here: that is the point, a misspelt field
// cannot slip through.

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type objectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type labelSelector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

type namespace struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
}

type deployment struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		Replicas             int           `json:"replicas"`
		RevisionHistoryLimit int           `json:"revisionHistoryLimit"`
		Selector             labelSelector `json:"selector"`
		Strategy             struct {
			Type          string `json:"type"`
			RollingUpdate struct {
				MaxUnavailable any `json:"maxUnavailable"`
				MaxSurge       any `json:"maxSurge"`
			} `json:"rollingUpdate"`
		} `json:"strategy"`
		Template struct {
			Metadata objectMeta `json:"metadata"`
			Spec     podSpec    `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type podSpec struct {
	AutomountServiceAccountToken  *bool `json:"automountServiceAccountToken"`
	EnableServiceLinks            *bool `json:"enableServiceLinks"`
	TerminationGracePeriodSeconds *int  `json:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot   *bool `json:"runAsNonRoot"`
		RunAsUser      *int  `json:"runAsUser"`
		RunAsGroup     *int  `json:"runAsGroup"`
		FSGroup        *int  `json:"fsGroup"`
		SeccompProfile struct {
			Type string `json:"type"`
		} `json:"seccompProfile"`
	} `json:"securityContext"`
	TopologySpreadConstraints []struct {
		MaxSkew           int           `json:"maxSkew"`
		TopologyKey       string        `json:"topologyKey"`
		WhenUnsatisfiable string        `json:"whenUnsatisfiable"`
		LabelSelector     labelSelector `json:"labelSelector"`
	} `json:"topologySpreadConstraints"`
	Containers []container `json:"containers"`
	Volumes    []struct {
		Name     string `json:"name"`
		EmptyDir *struct {
			SizeLimit string `json:"sizeLimit"`
		} `json:"emptyDir"`
		PersistentVolumeClaim *struct {
			ClaimName string `json:"claimName"`
		} `json:"persistentVolumeClaim"`
		Secret *struct {
			SecretName  string `json:"secretName"`
			DefaultMode *int   `json:"defaultMode"`
			Optional    *bool  `json:"optional"`
			Items       []struct {
				Key  string `json:"key"`
				Path string `json:"path"`
			} `json:"items"`
		} `json:"secret"`
	} `json:"volumes"`
}

type container struct {
	Name            string   `json:"name"`
	Image           string   `json:"image"`
	ImagePullPolicy string   `json:"imagePullPolicy"`
	Args            []string `json:"args"`
	Env             []struct {
		Name      string  `json:"name"`
		Value     *string `json:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name     string `json:"name"`
				Key      string `json:"key"`
				Optional *bool  `json:"optional"`
			} `json:"secretKeyRef"`
			ResourceFieldRef *struct {
				Resource string `json:"resource"`
			} `json:"resourceFieldRef"`
		} `json:"valueFrom"`
	} `json:"env"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
		Protocol      string `json:"protocol"`
	} `json:"ports"`
	StartupProbe   *probe `json:"startupProbe"`
	LivenessProbe  *probe `json:"livenessProbe"`
	ReadinessProbe *probe `json:"readinessProbe"`
	Resources      struct {
		Requests map[string]any `json:"requests"`
		Limits   map[string]any `json:"limits"`
	} `json:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool `json:"runAsNonRoot"`
		RunAsUser                *int  `json:"runAsUser"`
		Privileged               *bool `json:"privileged"`
		Capabilities             struct {
			Add  []string `json:"add"`
			Drop []string `json:"drop"`
		} `json:"capabilities"`
	} `json:"securityContext"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		ReadOnly  bool   `json:"readOnly"`
	} `json:"volumeMounts"`
}

type probe struct {
	GRPC *struct {
		Port    int     `json:"port"`
		Service *string `json:"service"`
	} `json:"grpc"`
	HTTPGet *struct {
		Path string `json:"path"`
		Port any    `json:"port"`
	} `json:"httpGet"`
	TCPSocket *struct {
		Port any `json:"port"`
	} `json:"tcpSocket"`
	Exec *struct {
		Command []string `json:"command"`
	} `json:"exec"`
	InitialDelaySeconds int `json:"initialDelaySeconds"`
	PeriodSeconds       int `json:"periodSeconds"`
	TimeoutSeconds      int `json:"timeoutSeconds"`
	FailureThreshold    int `json:"failureThreshold"`
	SuccessThreshold    int `json:"successThreshold"`
}

type service struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		Type     string            `json:"type"`
		Selector map[string]string `json:"selector"`
		Ports    []struct {
			Name        string `json:"name"`
			Port        int    `json:"port"`
			TargetPort  any    `json:"targetPort"`
			Protocol    string `json:"protocol"`
			AppProtocol string `json:"appProtocol"`
		} `json:"ports"`
	} `json:"spec"`
}

type podDisruptionBudget struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		MinAvailable               any           `json:"minAvailable"`
		MaxUnavailable             any           `json:"maxUnavailable"`
		Selector                   labelSelector `json:"selector"`
		UnhealthyPodEvictionPolicy string        `json:"unhealthyPodEvictionPolicy"`
	} `json:"spec"`
}

type persistentVolumeClaim struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		AccessModes      []string `json:"accessModes"`
		StorageClassName *string  `json:"storageClassName"`
		Resources        struct {
			Requests map[string]any `json:"requests"`
		} `json:"resources"`
	} `json:"spec"`
}

// netPeer and netPort are a NetworkPolicy rule's peers and ports.
type netPeer struct {
	NamespaceSelector *labelSelector `json:"namespaceSelector"`
	PodSelector       *labelSelector `json:"podSelector"`
	IPBlock           *struct {
		CIDR   string   `json:"cidr"`
		Except []string `json:"except"`
	} `json:"ipBlock"`
}

type netPort struct {
	Port     any    `json:"port"`
	Protocol string `json:"protocol"`
}

type networkPolicy struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		PodSelector labelSelector `json:"podSelector"`
		PolicyTypes []string      `json:"policyTypes"`
		Ingress     []struct {
			From  []netPeer `json:"from"`
			Ports []netPort `json:"ports"`
		} `json:"ingress"`
		Egress []struct {
			To    []netPeer `json:"to"`
			Ports []netPort `json:"ports"`
		} `json:"egress"`
	} `json:"spec"`
}

// kustomization is the part of kustomization.yaml these manifests use,
// decoded strictly like the manifests.
type kustomization struct {
	typeMeta
	Resources []string `json:"resources"`
	Patches   []struct {
		Path string `json:"path"`
	} `json:"patches"`
}

// k8sObjects are the decoded manifests that an overlay builds.
type k8sObjects struct {
	namespaces  []namespace
	deployments []deployment
	services    []service
	pdbs        []podDisruptionBudget
	pvcs        []persistentVolumeClaim
	netpols     []networkPolicy
}

// decodeKubernetes decodes every document of files (file name -> content)
// into its kind's type. A kind the test does not know is an error, so that
// nothing the overlay builds goes unchecked.
func decodeKubernetes(files map[string][]byte) (*k8sObjects, error) {
	objs := new(k8sObjects)
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(files)) {
		for i, doc := range splitDocuments(files[name]) {
			var tm typeMeta
			if err := sigsyaml.Unmarshal(doc, &tm); err != nil {
				errs = append(errs, fmt.Errorf("%s doc %d: %w", name, i, err))
				continue
			}
			where := fmt.Sprintf("%s doc %d (%s)", name, i, tm.Kind)
			var err error
			switch tm.APIVersion + " " + tm.Kind {
			case "v1 Namespace":
				var o namespace
				err = decodeManifest(doc, &o)
				objs.namespaces = append(objs.namespaces, o)
			case "apps/v1 Deployment":
				var o deployment
				err = decodeManifest(doc, &o)
				objs.deployments = append(objs.deployments, o)
			case "v1 Service":
				var o service
				err = decodeManifest(doc, &o)
				objs.services = append(objs.services, o)
			case "policy/v1 PodDisruptionBudget":
				var o podDisruptionBudget
				err = decodeManifest(doc, &o)
				objs.pdbs = append(objs.pdbs, o)
			case "v1 PersistentVolumeClaim":
				var o persistentVolumeClaim
				err = decodeManifest(doc, &o)
				objs.pvcs = append(objs.pvcs, o)
			case "networking.k8s.io/v1 NetworkPolicy":
				var o networkPolicy
				err = decodeManifest(doc, &o)
				objs.netpols = append(objs.netpols, o)
			default:
				err = fmt.Errorf("apiVersion %q kind %q is not checked by this test", tm.APIVersion, tm.Kind)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
		}
	}
	return objs, errors.Join(errs...)
}

// byName returns the object of objs named name.
func byName[T any](objs []T, meta func(T) objectMeta, name string) (T, bool) {
	for _, o := range objs {
		if meta(o).Name == name {
			return o, true
		}
	}
	var zero T
	return zero, false
}

// Names of the objects the overlays build.
const (
	flowlockName = "flowlock-authz"
	redisName    = "flowlock-redis"
)

// networkPolicyErrors checks that a NetworkPolicy selects Flow Lock's pods,
// restricts ingress, and lets only named sources reach the gRPC port (which
// can get any client quarantined) and the HTTP port (which shows every
// tracked client), each rule with its own port.
func networkPolicyErrors(np networkPolicy, sel map[string]string, bad func(string, ...any)) {
	if !maps.Equal(np.Spec.PodSelector.MatchLabels, sel) {
		bad("networkpolicy %s: podSelector %v differs from the deployment's %v", np.Metadata.Name, np.Spec.PodSelector.MatchLabels, sel)
	}
	if !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
		bad("networkpolicy %s: policyTypes must include Ingress", np.Metadata.Name)
	}
	covered := map[string]bool{}
	for i, rule := range np.Spec.Ingress {
		if len(rule.From) == 0 {
			bad("networkpolicy %s: ingress rule %d has no from: it admits everyone", np.Metadata.Name, i)
		}
		for _, f := range rule.From {
			if f.IPBlock != nil && (f.IPBlock.CIDR == "0.0.0.0/0" || f.IPBlock.CIDR == "::/0") {
				bad("networkpolicy %s: ingress rule %d admits %s", np.Metadata.Name, i, f.IPBlock.CIDR)
			}
			if f.NamespaceSelector != nil && len(f.NamespaceSelector.MatchLabels) == 0 && f.PodSelector == nil {
				bad("networkpolicy %s: ingress rule %d admits every namespace", np.Metadata.Name, i)
			}
		}
		if len(rule.Ports) == 0 {
			bad("networkpolicy %s: ingress rule %d has no ports: it opens every port", np.Metadata.Name, i)
		}
		for _, p := range rule.Ports {
			covered[fmt.Sprint(p.Port)] = true
		}
	}
	for _, port := range []string{"9191", "8080"} {
		if !covered[port] {
			bad("networkpolicy %s: no rule admits port %s", np.Metadata.Name, port)
		}
	}
}

// egressAllows reports whether np, if it restricts egress at all, lets
// its pods reach port on pods labelled dst (nil: a host outside the
// cluster).
func egressAllows(np networkPolicy, dst map[string]string, port int) bool {
	if !slices.Contains(np.Spec.PolicyTypes, "Egress") {
		return true
	}
	for _, rule := range np.Spec.Egress {
		portOK := len(rule.Ports) == 0
		for _, p := range rule.Ports {
			portOK = portOK || fmt.Sprint(p.Port) == fmt.Sprint(port)
		}
		peerOK := len(rule.To) == 0
		for _, to := range rule.To {
			switch {
			case to.IPBlock != nil:
				peerOK = peerOK || dst == nil
			case to.PodSelector != nil:
				peerOK = peerOK || dst != nil && subset(to.PodSelector.MatchLabels, dst)
			case to.NamespaceSelector != nil:
				peerOK = peerOK || dst != nil
			}
		}
		if portOK && peerOK {
			return true
		}
	}
	return false
}

// k8sFacts are the values of the Kubernetes manifests that other files must
// agree with.
type k8sFacts struct {
	namespace   string
	serviceName string
	grpcPort    int           // Service port for gRPC
	grpcAppProt string        // its appProtocol
	replicas    int           // flowlock-authz replicas
	redis       string        // "" (none), "in-cluster" or "external"
	flowlock    config.Config // flowlock-authz settings from the container args
}

// podErrors checks the hardening every pod of these manifests needs under
// the restricted Pod Security Standard, and the container's resources.
func podErrors(what string, pod podSpec, c container, bad func(string, ...any)) {
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		bad("%s: automountServiceAccountToken must be false: it does not call the API server", what)
	}
	sc := pod.SecurityContext
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		bad("%s: pod securityContext.runAsNonRoot must be true", what)
	}
	if sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		bad("%s: pod securityContext.runAsUser must be a non-zero uid (the image's USER is a name the kubelet cannot verify)", what)
	}
	if sc.SeccompProfile.Type != "RuntimeDefault" {
		bad("%s: pod seccompProfile must be RuntimeDefault, got %q", what, sc.SeccompProfile.Type)
	}
	if !pinnedImage.MatchString(c.Image) {
		bad("container %s: image %q is not pinned to a release tag or digest", c.Name, c.Image)
	}
	csc := c.SecurityContext
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		bad("container %s: allowPrivilegeEscalation must be false", c.Name)
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		bad("container %s: readOnlyRootFilesystem must be true", c.Name)
	}
	if csc.Privileged != nil && *csc.Privileged {
		bad("container %s: must not be privileged", c.Name)
	}
	if !slices.Equal(csc.Capabilities.Drop, []string{"ALL"}) || len(csc.Capabilities.Add) > 0 {
		bad("container %s: capabilities must drop [ALL] and add none, got drop %v add %v", c.Name, csc.Capabilities.Drop, csc.Capabilities.Add)
	}
	for _, kind := range []string{"requests", "limits"} {
		rl := c.Resources.Requests
		if kind == "limits" {
			rl = c.Resources.Limits
		}
		for _, res := range []string{"cpu", "memory"} {
			if rl[res] == nil {
				bad("container %s: resources.%s.%s is not set", c.Name, kind, res)
			}
		}
	}
	if c.ReadinessProbe == nil || c.LivenessProbe == nil {
		bad("container %s: needs a readinessProbe and a livenessProbe", c.Name)
	}
}

// literalPassword returns the argument or literal variable of c that
// looks like a password given in clear, or "".
func literalPassword(c container) string {
	for _, a := range c.Args {
		flag, _, _ := strings.Cut(a, "=")
		if strings.Contains(strings.ToLower(flag), "password") && !strings.HasSuffix(flag, "-file") {
			return a
		}
	}
	for _, e := range c.Env {
		if e.Value != nil && strings.Contains(e.Name, "PASSWORD") && !strings.HasSuffix(e.Name, "_FILE") {
			return e.Name
		}
	}
	return ""
}

// secretMount returns the Secret behind the volume that holds file in c,
// or "" when file is not on a Secret volume.
func secretMount(pod podSpec, c container, file string) string {
	for _, vm := range c.VolumeMounts {
		if !strings.HasPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.Secret != nil {
				return v.Secret.SecretName
			}
		}
	}
	return ""
}

// loadFlowlockConfig runs flowlock-authz's own settings loader on the
// container's args and literal environment. The files that Secrets mount
// at run time (Redis password, admin token) do not exist here: each is
// replaced by a temporary file, so that Load checks everything else.
func loadFlowlockConfig(c container) (config.Config, error) {
	env := make(map[string]string)
	for _, e := range c.Env {
		if e.Value != nil {
			env[e.Name] = *e.Value
		}
	}
	stand, err := os.CreateTemp("", "flowlock-secret-")
	if err != nil {
		return config.Config{}, err
	}
	defer os.Remove(stand.Name())
	stand.WriteString("a-secret-mounted-at-run-time\n")
	stand.Close()
	secretFiles := []string{"--redis-password-file", "--admin-token-file"}
	real := make(map[string]string) // flag -> the path in the manifest
	args := slices.Clone(c.Args[min(1, len(c.Args)):])
	for i, a := range args {
		flag, v, ok := strings.Cut(a, "=")
		if ok && slices.Contains(secretFiles, flag) {
			args[i], real[flag] = flag+"="+stand.Name(), v
		}
	}
	for _, flag := range secretFiles {
		k := "FLOWLOCK_" + strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(flag, "--"), "-", "_"))
		if v := env[k]; v != "" {
			env[k] = stand.Name()
			real[flag] = cmp.Or(real[flag], v) // the flag wins, as in Load
		}
	}
	cfg, err := config.Load(args, func(k string) string { return env[k] })
	cfg.RedisPasswordFile = cmp.Or(real["--redis-password-file"], cfg.RedisPasswordFile)
	cfg.AdminTokenFile = cmp.Or(real["--admin-token-file"], cfg.AdminTokenFile)
	return cfg, err
}

// kubernetesErrors checks what an overlay builds: Flow Lock's replicas
// and how they share state (several replicas need Redis, its password
// from a Secret file, and a Redis they can reach), a disruption budget
// that keeps some replicas up without blocking drains, pod hardening,
// probes, resources, flags, and that Deployment, Service, PDB and
// NetworkPolicy select the same pods. With an in-cluster Redis, that
// Redis is checked too (redisErrors).
func kubernetesErrors(o *k8sObjects) (k8sFacts, error) {
	var facts k8sFacts
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	dmeta := func(d deployment) objectMeta { return d.Metadata }
	smeta := func(s service) objectMeta { return s.Metadata }
	d, okD := byName(o.deployments, dmeta, flowlockName)
	svc, okS := byName(o.services, smeta, flowlockName)
	pdb, okP := byName(o.pdbs, func(p podDisruptionBudget) objectMeta { return p.Metadata }, flowlockName)
	np, okN := byName(o.netpols, func(n networkPolicy) objectMeta { return n.Metadata }, flowlockName)
	if len(o.namespaces) != 1 || !okD || !okS || !okP || !okN {
		bad("want one Namespace, and a Deployment, Service, PodDisruptionBudget and NetworkPolicy named %s; got %d namespaces, %t, %t, %t, %t",
			flowlockName, len(o.namespaces), okD, okS, okP, okN)
		return facts, errors.Join(errs...)
	}
	ns := o.namespaces[0]
	for _, d := range o.deployments {
		if n := d.Metadata.Name; n != flowlockName && n != redisName {
			bad("deployment %s is not checked by this test", n)
		}
	}

	// Everything in one namespace, which enforces the restricted profile.
	facts.namespace = ns.Metadata.Name
	var metas []objectMeta
	for _, x := range o.deployments {
		metas = append(metas, x.Metadata)
	}
	for _, x := range o.services {
		metas = append(metas, x.Metadata)
	}
	for _, x := range o.pdbs {
		metas = append(metas, x.Metadata)
	}
	for _, x := range o.pvcs {
		metas = append(metas, x.Metadata)
	}
	for _, x := range o.netpols {
		metas = append(metas, x.Metadata)
	}
	for _, m := range metas {
		if m.Namespace != ns.Metadata.Name {
			bad("%s is in namespace %q, want %q", m.Name, m.Namespace, ns.Metadata.Name)
		}
	}
	if ns.Metadata.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		bad("namespace %s: pod-security.kubernetes.io/enforce must be restricted", ns.Metadata.Name)
	}

	// Selectors: the Deployment owns its template's pods; the Service and
	// the PDB select exactly those pods.
	tmplLabels := d.Spec.Template.Metadata.Labels
	sel := d.Spec.Selector.MatchLabels
	switch {
	case len(sel) == 0:
		bad("deployment: empty selector")
	case !subset(sel, tmplLabels):
		bad("deployment: selector %v does not match the pod template labels %v", sel, tmplLabels)
	}
	if !maps.Equal(svc.Spec.Selector, sel) {
		bad("service %s: selector %v differs from the deployment's %v", svc.Metadata.Name, svc.Spec.Selector, sel)
	}
	if !maps.Equal(pdb.Spec.Selector.MatchLabels, sel) {
		bad("pdb %s: selector %v differs from the deployment's %v", pdb.Metadata.Name, pdb.Spec.Selector.MatchLabels, sel)
	}
	networkPolicyErrors(np, sel, bad)
	for _, tsc := range d.Spec.Template.Spec.TopologySpreadConstraints {
		if !maps.Equal(tsc.LabelSelector.MatchLabels, sel) {
			bad("deployment: topologySpreadConstraints selector %v differs from the deployment's %v", tsc.LabelSelector.MatchLabels, sel)
		}
	}

	// Availability: the PDB must allow an eviction, or a drain never ends,
	// and with several replicas it must keep at least one up.
	r := d.Spec.Replicas
	facts.replicas = r
	if r < 1 {
		bad("deployment: replicas %d, want at least 1", r)
	}
	switch minAvail, maxUnavail := pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable; {
	case (minAvail == nil) == (maxUnavail == nil):
		bad("pdb %s: set exactly one of minAvailable and maxUnavailable", pdb.Metadata.Name)
	case minAvail != nil && !intIn(minAvail, 0, r-1):
		bad("pdb %s: minAvailable %v blocks every eviction of %d replica(s): node drains would never finish", pdb.Metadata.Name, minAvail, r)
	case minAvail != nil && r > 1 && intIn(minAvail, 0, 0):
		bad("pdb %s: minAvailable 0 lets all %d replicas go down at once", pdb.Metadata.Name, r)
	case maxUnavail != nil && !intIn(maxUnavail, 1, r):
		bad("pdb %s: maxUnavailable %v must be from 1 to replicas (%d)", pdb.Metadata.Name, maxUnavail, r)
	case maxUnavail != nil && r > 1 && intIn(maxUnavail, r, r):
		bad("pdb %s: maxUnavailable %v lets all %d replicas go down at once", pdb.Metadata.Name, maxUnavail, r)
	}

	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		bad("deployment: want one container, got %d", len(pod.Containers))
		return facts, errors.Join(errs...)
	}
	c := pod.Containers[0]
	podErrors("deployment "+flowlockName, pod, c, bad)

	// flowlock-authz must accept its arguments (with the literal
	// environment; valueFrom variables are not known here).
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		bad("container %s: args %v, want serve and flags", c.Name, c.Args)
	}
	for _, e := range c.Env {
		if sk := e.ValueFrom; sk != nil && sk.SecretKeyRef != nil && (sk.SecretKeyRef.Optional == nil || !*sk.SecretKeyRef.Optional) {
			bad("container %s: env %s needs Secret %s: mark it optional or the pod does not start without it", c.Name, e.Name, sk.SecretKeyRef.Name)
		}
	}
	if lit := literalPassword(c); lit != "" {
		flag, _, _ := strings.Cut(lit, "=")
		bad("container %s: a Redis password given as a literal (%s): it would be in the pod spec; mount it from a Secret and name the file with --redis-password-file", c.Name, flag)
		return facts, errors.Join(errs...)
	}
	cfg, err := loadFlowlockConfig(c)
	if err != nil {
		bad("container %s: flowlock-authz would refuse its settings: %v", c.Name, err)
		return facts, errors.Join(errs...)
	}
	facts.flowlock = cfg
	if pod.TerminationGracePeriodSeconds == nil || time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= cfg.ShutdownTimeout {
		bad("deployment: terminationGracePeriodSeconds must exceed --shutdown-timeout (%v)", cfg.ShutdownTimeout)
	}

	// Several replicas are one only through Redis: each would otherwise
	// see a random share of a client's requests (issue 13: 17 % of bots
	// detected with three replicas instead of 100 %).
	if r > 1 && cfg.RedisAddr == "" {
		bad("deployment: replicas %d without --redis-addr (or FLOWLOCK_REDIS_ADDR): each replica would see a random share of a client's requests, and a bot's rhythm would look human; share state through Redis or run 1 replica", r)
	}
	if cfg.RedisAddr != "" {
		switch {
		case cfg.RedisPasswordFile == "":
			bad("container %s: --redis-addr without --redis-password-file: Redis holds the quarantine list, it must not take commands from anyone who reaches it", c.Name)
		case secretMount(pod, c, cfg.RedisPasswordFile) == "":
			bad("container %s: --redis-password-file %s is not on a volume from a Secret", c.Name, cfg.RedisPasswordFile)
		}
		redisWiringErrors(o, np, sel, cfg, secretMount(pod, c, cfg.RedisPasswordFile), &facts, bad)
	}

	// The quarantine list must outlive the pod: in Redis, or in
	// --state-file on the PVC.
	stateVol := ""
	for _, vm := range c.VolumeMounts {
		if cfg.StateFile != "" && strings.HasPrefix(cfg.StateFile, strings.TrimSuffix(vm.MountPath, "/")+"/") && !vm.ReadOnly {
			stateVol = vm.Name
		}
	}
	switch {
	case cfg.StateFile == "" && cfg.RedisAddr == "":
		bad("container %s: no --state-file and no --redis-addr: every restart would release every quarantined client", c.Name)
	case cfg.StateFile != "" && stateVol == "":
		bad("container %s: --state-file %s is not on a writable volume (the root filesystem is read-only)", c.Name, cfg.StateFile)
	}
	for _, v := range pod.Volumes {
		if v.Name != stateVol || stateVol == "" {
			continue
		}
		pvc, okPVC := byName(o.pvcs, func(p persistentVolumeClaim) objectMeta { return p.Metadata }, claimName(v.PersistentVolumeClaim))
		switch {
		case v.PersistentVolumeClaim == nil && cfg.RedisAddr == "":
			bad("deployment: state volume %s is not persistent: quarantines would be lost whenever the pod is replaced", v.Name)
		case v.PersistentVolumeClaim == nil:
		case !okPVC:
			bad("deployment: state volume %s claims %q, but no PersistentVolumeClaim has that name", v.Name, v.PersistentVolumeClaim.ClaimName)
		case slices.Contains(pvc.Spec.AccessModes, "ReadWriteOnce") && r > 1:
			bad("deployment: state volume %s is a ReadWriteOnce claim, which %d replicas cannot share", v.Name, r)
		case slices.Contains(pvc.Spec.AccessModes, "ReadWriteOnce") && d.Spec.Strategy.Type != "Recreate":
			bad("deployment: strategy %q with a ReadWriteOnce state volume: the new pod cannot mount it while the old one runs; use Recreate", d.Spec.Strategy.Type)
		}
	}

	// Ports and probes: native gRPC probes on the port --grpc-addr listens
	// on; the Service's grpc port reaches it and says it is gRPC.
	ports := make(map[string]int)
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["grpc"] != int(listenPort(cfg.GRPCAddr)) {
		bad("container %s: port grpc is %d, but --grpc-addr is %s", c.Name, ports["grpc"], cfg.GRPCAddr)
	}
	if ports["http"] != int(listenPort(cfg.HTTPAddr)) {
		bad("container %s: port http is %d, but --http-addr is %s", c.Name, ports["http"], cfg.HTTPAddr)
	}
	for name, p := range map[string]*probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
		switch {
		case p == nil:
		case p.GRPC == nil || p.HTTPGet != nil || p.TCPSocket != nil || p.Exec != nil:
			bad("container %s: %s must be a native grpc probe", c.Name, name)
		case p.GRPC.Port != ports["grpc"]:
			bad("container %s: %s asks port %d, but gRPC is on %d", c.Name, name, p.GRPC.Port, ports["grpc"])
		}
	}
	if p := c.ReadinessProbe; p != nil && p.GRPC != nil && (p.GRPC.Service == nil || *p.GRPC.Service != authzHealthService) {
		bad("container %s: readinessProbe must ask about service %s, the Check service Envoy calls", c.Name, authzHealthService)
	}

	facts.serviceName = svc.Metadata.Name
	for _, p := range svc.Spec.Ports {
		target := fmt.Sprint(p.TargetPort)
		if n, ok := ports[target]; ok {
			target = fmt.Sprint(n)
		}
		if p.Name == "grpc" {
			facts.grpcPort, facts.grpcAppProt = p.Port, p.AppProtocol
			if target != fmt.Sprint(ports["grpc"]) {
				bad("service %s: port grpc targets %v, not the container's gRPC port", svc.Metadata.Name, p.TargetPort)
			}
			if p.AppProtocol != "grpc" {
				bad("service %s: port grpc must have appProtocol grpc (HTTP/2 per-request balancing in a mesh)", svc.Metadata.Name)
			}
		}
	}
	if facts.grpcPort == 0 {
		bad("service %s: no port named grpc", svc.Metadata.Name)
	}
	return facts, errors.Join(errs...)
}

func claimName(p *struct {
	ClaimName string `json:"claimName"`
}) string {
	if p == nil {
		return ""
	}
	return p.ClaimName
}

// redisWiringErrors checks that the replicas can reach the Redis their
// --redis-addr names. A Service of these manifests is the in-cluster
// Redis (redisErrors checks it); any other address is outside the
// namespace, so the connection must be TLS. secret is the Secret the
// replicas read the password from.
func redisWiringErrors(o *k8sObjects, np networkPolicy, sel map[string]string, cfg config.Config, secret string, facts *k8sFacts, bad func(string, ...any)) {
	addrs := cfg.RedisAddrs()
	host, portText, _ := net.SplitHostPort(addrs[0])
	port, _ := strconv.Atoi(portText)
	ns := o.namespaces[0].Metadata.Name
	svcName, _, _ := strings.Cut(strings.TrimSuffix(host, ".svc.cluster.local"), ".")
	inCluster := host == svcName || host == svcName+"."+ns || host == svcName+"."+ns+".svc" || host == svcName+"."+ns+".svc.cluster.local"
	svc, ok := byName(o.services, func(s service) objectMeta { return s.Metadata }, svcName)
	if !inCluster || !ok {
		facts.redis = "external"
		if !cfg.RedisTLS {
			bad("--redis-addr %s is not a Service of these manifests: the connection leaves the namespace, add --redis-tls", cfg.RedisAddr)
		}
		if !egressAllows(np, nil, port) {
			bad("networkpolicy %s restricts egress but lets the replicas reach no external host on port %d (Redis)", np.Metadata.Name, port)
		}
		if _, ok := byName(o.deployments, func(d deployment) objectMeta { return d.Metadata }, redisName); ok {
			bad("deployment %s runs, but --redis-addr %s does not name its Service", redisName, cfg.RedisAddr)
		}
		return
	}
	facts.redis = "in-cluster"
	if len(addrs) > 1 {
		bad("--redis-addr %s: an in-cluster Redis is one Service address", cfg.RedisAddr)
	}
	var target any
	for _, p := range svc.Spec.Ports {
		if p.Port == port {
			target = p.TargetPort
		}
	}
	if target == nil {
		bad("--redis-addr %s: service %s has no port %d", cfg.RedisAddr, svc.Metadata.Name, port)
		return
	}
	rd, ok := byName(o.deployments, func(d deployment) objectMeta { return d.Metadata }, redisName)
	if !ok || !maps.Equal(svc.Spec.Selector, rd.Spec.Selector.MatchLabels) {
		bad("service %s: selects %v, but no Deployment %s runs those pods", svc.Metadata.Name, svc.Spec.Selector, redisName)
		return
	}
	redisErrors(o, rd, target, secret, sel, bad)
	rport := 0
	for _, p := range rd.Spec.Template.Spec.Containers[0].Ports {
		if fmt.Sprint(target) == p.Name || fmt.Sprint(target) == fmt.Sprint(p.ContainerPort) {
			rport = p.ContainerPort
		}
	}
	if !egressAllows(np, rd.Spec.Template.Metadata.Labels, rport) {
		bad("networkpolicy %s restricts egress but does not let the replicas reach Redis (pods %v, port %d)", np.Metadata.Name, rd.Spec.Selector.MatchLabels, rport)
	}
}

// redisErrors checks the in-cluster Redis: hardened like Flow Lock,
// password from the Secret the replicas read (never a literal), data
// persistent (a Redis restarted empty tells every replica the shared list
// is empty, and they release every quarantined client), memory bounded
// without evicting quarantines, and reachable only from Flow Lock's pods.
func redisErrors(o *k8sObjects, rd deployment, target any, secret string, flowlockPods map[string]string, bad func(string, ...any)) {
	pod := rd.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		bad("deployment %s: want one container, got %d", redisName, len(pod.Containers))
		return
	}
	c := pod.Containers[0]
	podErrors("deployment "+redisName, pod, c, bad)
	if rd.Spec.Replicas != 1 {
		bad("deployment %s: replicas %d, want 1 (replicas of a plain Redis do not share data)", redisName, rd.Spec.Replicas)
	}
	if !strings.HasPrefix(c.Image, "redis:") && !strings.HasPrefix(c.Image, "valkey/valkey:") {
		bad("container %s: image %q is not the official redis or valkey image", c.Name, c.Image)
	}
	ports := make(map[string]int)
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	port, ok := ports[fmt.Sprint(target)]
	if !ok {
		port, _ = strconv.Atoi(fmt.Sprint(target))
	}
	if want := cmp.Or(flagValue(c.Args, "--port"), "6379"); strconv.Itoa(port) != want {
		bad("service %s targets port %d, but Redis listens on %s", redisName, port, want)
	}

	// The password: $(VAR), VAR from the replicas' Secret.
	pass := flagValue(c.Args, "--requirepass")
	ref := regexp.MustCompile(`^\$\(([A-Z_][A-Z0-9_]*)\)$`).FindStringSubmatch(pass)
	switch {
	case pass == "":
		bad("container %s: no --requirepass: anyone who reaches Redis could quarantine or release any client", c.Name)
	case ref == nil:
		bad("container %s: --requirepass is a literal: it would be in the pod spec; use $(VAR) with VAR from the Secret %s", c.Name, secret)
	default:
		from := ""
		for _, e := range c.Env {
			if e.Name == ref[1] && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				from = e.ValueFrom.SecretKeyRef.Name
			}
		}
		if from != secret {
			bad("container %s: --requirepass %s is not from the Secret %s that the replicas read (got %q)", c.Name, pass, secret, from)
		}
	}

	// Data: persistent, bounded, never evicted.
	if flagValue(c.Args, "--appendonly") != "yes" {
		bad("container %s: needs --appendonly yes: a Redis restarted empty would make every replica release every quarantined client", c.Name)
	}
	dataOK := false
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != "/data" {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.PersistentVolumeClaim != nil {
				_, dataOK = byName(o.pvcs, func(p persistentVolumeClaim) objectMeta { return p.Metadata }, v.PersistentVolumeClaim.ClaimName)
			}
		}
	}
	if !dataOK {
		bad("container %s: /data is not on a PersistentVolumeClaim of these manifests", c.Name)
	} else if rd.Spec.Strategy.Type != "Recreate" {
		bad("deployment %s: strategy %q with a ReadWriteOnce data volume; use Recreate", redisName, rd.Spec.Strategy.Type)
	}
	if flagValue(c.Args, "--maxmemory") == "" || flagValue(c.Args, "--maxmemory-policy") != "noeviction" {
		bad("container %s: needs --maxmemory below the memory limit and --maxmemory-policy noeviction: an evicting Redis would drop quarantines, an unbounded one is OOM-killed", c.Name)
	}

	// Reachable only from Flow Lock's pods.
	np, ok := byName(o.netpols, func(n networkPolicy) objectMeta { return n.Metadata }, redisName)
	if !ok {
		bad("no NetworkPolicy %s: any pod in the cluster could reach Redis", redisName)
		return
	}
	if !maps.Equal(np.Spec.PodSelector.MatchLabels, rd.Spec.Selector.MatchLabels) || !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
		bad("networkpolicy %s: must select the Redis pods %v and restrict Ingress", redisName, rd.Spec.Selector.MatchLabels)
	}
	admitted := false
	for i, rule := range np.Spec.Ingress {
		if len(rule.From) == 0 {
			bad("networkpolicy %s: ingress rule %d has no from: it admits everyone", redisName, i)
		}
		for _, f := range rule.From {
			if f.PodSelector == nil || f.NamespaceSelector != nil || f.IPBlock != nil || !maps.Equal(f.PodSelector.MatchLabels, flowlockPods) {
				bad("networkpolicy %s: ingress rule %d admits more than Flow Lock's pods %v", redisName, i, flowlockPods)
			}
		}
		for _, p := range rule.Ports {
			admitted = admitted || fmt.Sprint(p.Port) == strconv.Itoa(port)
		}
	}
	if !admitted {
		bad("networkpolicy %s: no rule admits Flow Lock's pods to port %d", redisName, port)
	}
}

// intIn reports whether v, a decoded JSON value, is an integer in [lo, hi].
// Percentages ("50%") are not used by these manifests and are refused.
func intIn(v any, lo, hi int) bool {
	f, ok := v.(float64)
	return ok && f == float64(int(f)) && int(f) >= lo && int(f) <= hi
}

func subset(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// readDir returns the YAML files of a deploy/ subdirectory by name.
func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatalf("no YAML files in %s", dir)
	}
	files := make(map[string][]byte)
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(n)] = data
	}
	return files
}

// readTree returns every file under dir, by slash-separated path relative
// to dir.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := make(map[string][]byte)
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// kubernetesOverlays are the directories of deploy/kubernetes that
// `kubectl apply -k` applies; base/ is only built as part of them.
var kubernetesOverlays = []string{"in-cluster-redis", "external-redis", "single"}

// kustomizationErrors decodes every kustomization.yaml of the tree
// strictly and checks that each YAML file is listed (as a resource or a
// patch) by the kustomization of its directory: a manifest nobody lists
// is never applied, and never checked.
func kustomizationErrors(files map[string][]byte) error {
	var errs []error
	listed := make(map[string]bool)
	for name, data := range files {
		if path.Base(name) != "kustomization.yaml" {
			continue
		}
		var k kustomization
		if err := decodeManifest(data, &k); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		dir := path.Dir(name)
		for _, r := range k.Resources {
			listed[path.Join(dir, r)] = true
		}
		for _, p := range k.Patches {
			listed[path.Join(dir, p.Path)] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if strings.HasSuffix(name, ".yaml") && path.Base(name) != "kustomization.yaml" && !listed[name] {
			errs = append(errs, fmt.Errorf("%s is listed by no kustomization.yaml (resources or patches): it would never be applied", name))
		}
	}
	return errors.Join(errs...)
}

// buildOverlay runs kustomize, the library inside `kubectl apply -k`
// (sigs.k8s.io/kustomize/api), on overlay, over files held in memory.
func buildOverlay(files map[string][]byte, overlay string) ([]byte, error) {
	mem := filesys.MakeFsInMemory()
	const root = "/deploy/kubernetes"
	for name, data := range files {
		p := path.Join(root, name)
		if err := mem.MkdirAll(path.Dir(p)); err != nil {
			return nil, err
		}
		if err := mem.WriteFile(p, data); err != nil {
			return nil, err
		}
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, path.Join(root, overlay))
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", overlay, err)
	}
	return m.AsYaml()
}

// checkKubernetes builds overlay from files (paths relative to
// deploy/kubernetes) and checks what it builds.
func checkKubernetes(files map[string][]byte, overlay string) (k8sFacts, error) {
	if err := kustomizationErrors(files); err != nil {
		return k8sFacts{}, err
	}
	built, err := buildOverlay(files, overlay)
	if err != nil {
		return k8sFacts{}, err
	}
	objs, err := decodeKubernetes(map[string][]byte{overlay: built})
	if err != nil {
		return k8sFacts{}, err
	}
	return kubernetesErrors(objs)
}

// loadKubernetes checks the default overlay, in-cluster-redis.
func loadKubernetes(t *testing.T) k8sFacts {
	t.Helper()
	facts, err := checkKubernetes(readTree(t, kubernetesDir), kubernetesOverlays[0])
	if err != nil {
		t.Fatalf("deploy/kubernetes/%s:\n%v", kubernetesOverlays[0], err)
	}
	return facts
}

func TestKubernetes(t *testing.T) {
	files := readTree(t, kubernetesDir)
	want := map[string]struct {
		replicas int
		redis    string
	}{
		"in-cluster-redis": {3, "in-cluster"},
		"external-redis":   {3, "external"},
		"single":           {1, ""},
	}
	for _, overlay := range kubernetesOverlays {
		t.Run(overlay, func(t *testing.T) {
			facts, err := checkKubernetes(files, overlay)
			if err != nil {
				t.Fatalf("deploy/kubernetes/%s:\n%v", overlay, err)
			}
			if facts.namespace != "flowlock" || facts.serviceName != "flowlock-authz" || facts.grpcPort != 9191 {
				t.Errorf("facts = %+v, want namespace flowlock, service flowlock-authz, grpc port 9191", facts)
			}
			if w := want[overlay]; facts.replicas != w.replicas || facts.redis != w.redis {
				t.Errorf("%d replicas, Redis %q; want %d, %q", facts.replicas, facts.redis, w.replicas, w.redis)
			}
			if overlay == "external-redis" && !facts.flowlock.RedisTLS {
				t.Error("external Redis without --redis-tls")
			}
		})
	}
}

// fileEdit is a text mutation of one file of a directory. overlay is the
// one the test builds ("" for in-cluster-redis).
type fileEdit struct {
	name, file, old, new string
	overlay              string
	wantErr              string
}

// applyEdit returns a copy of files with one edit applied; old must occur
// exactly once.
func applyEdit(t *testing.T, files map[string][]byte, e fileEdit) map[string][]byte {
	t.Helper()
	out := maps.Clone(files)
	data, ok := files[e.file]
	if !ok {
		t.Fatalf("no file %s", e.file)
	}
	if n := strings.Count(string(data), e.old); n != 1 {
		t.Fatalf("%q occurs %d times in %s, want 1: update the mutation", e.old, n, e.file)
	}
	out[e.file] = []byte(strings.Replace(string(data), e.old, e.new, 1))
	return out
}

var kubernetesBrokenCopies = []fileEdit{
	{
		name: "network policy open to everyone", file: "base/networkpolicy.yaml",
		old:     "  - from:\n    - namespaceSelector:\n        matchLabels:\n          flowlock.io/checks: \"true\"\n    ports:",
		new:     "  - ports:",
		wantErr: "ingress rule 0 has no from: it admits everyone",
	},
	{
		name: "network policy selects other pods", file: "base/networkpolicy.yaml",
		old:     "  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: flowlock-authz\n",
		new:     "  podSelector:\n    matchLabels:\n      app: flowlock-authz\n",
		wantErr: "podSelector map[app:flowlock-authz] differs",
	},
	{
		name: "network policy opens every port", file: "base/networkpolicy.yaml",
		old: "    ports:\n    - port: 8080\n      protocol: TCP\n", new: "",
		wantErr: "ingress rule 1 has no ports: it opens every port",
	},
	{
		name: "network policy cuts the replicas off Redis", file: "base/networkpolicy.yaml",
		old: "  policyTypes:\n  - Ingress\n", new: "  policyTypes:\n  - Ingress\n  - Egress\n",
		wantErr: "networkpolicy flowlock-authz restricts egress but does not let the replicas reach Redis",
	},
	{
		name: "network policy cuts the replicas off the external Redis", file: "base/networkpolicy.yaml", overlay: "external-redis",
		old: "  policyTypes:\n  - Ingress\n", new: "  policyTypes:\n  - Ingress\n  - Egress\n",
		wantErr: "lets the replicas reach no external host on port 6380",
	},
	{
		name: "field name in the wrong case", file: "base/deployment.yaml",
		old: "readOnlyRootFilesystem: true", new: "readOnlyRootFileSystem: true",
		wantErr: `unknown object member name "readOnlyRootFileSystem"`,
	},
	{
		name: "unknown field", file: "base/deployment.yaml",
		old: "          periodSeconds: 5\n", new: "          periodSecond: 5\n",
		wantErr: `unknown object member name "periodSecond"`,
	},
	{
		name: "duplicate key", file: "base/service.yaml",
		old: "  type: ClusterIP\n", new: "  type: ClusterIP\n  type: NodePort\n",
		wantErr: `mapping key "type" already defined`,
	},
	{
		name: "unknown kind", file: "base/pdb.yaml",
		old: "apiVersion: policy/v1\n", new: "apiVersion: policy/v1beta1\n",
		wantErr: `apiVersion "policy/v1beta1" kind "PodDisruptionBudget" is not checked`,
	},
	{
		name: "unknown kustomization field", file: "in-cluster-redis/kustomization.yaml",
		old: "resources:\n", new: "resource:\n",
		wantErr: `unknown object member name "resource"`,
	},
	{
		name: "readiness probe over HTTP", file: "base/deployment.yaml",
		old:     "        readinessProbe:\n          grpc:\n            port: 9191\n            service: envoy.service.auth.v3.Authorization\n",
		new:     "        readinessProbe:\n          httpGet:\n            path: /readyz\n            port: http\n",
		wantErr: "readinessProbe must be a native grpc probe",
	},
	{
		name: "readiness on the wrong health service", file: "base/deployment.yaml",
		old: "service: envoy.service.auth.v3.Authorization", new: "service: grpc.health.v1.Health",
		wantErr: "readinessProbe must ask about service envoy.service.auth.v3.Authorization",
	},
	{
		name: "probe on another port", file: "base/deployment.yaml",
		old: "        livenessProbe:\n          grpc:\n            port: 9191\n", new: "        livenessProbe:\n          grpc:\n            port: 8080\n",
		wantErr: "livenessProbe asks port 8080, but gRPC is on 9191",
	},
	{
		name: "may run as root", file: "base/deployment.yaml",
		old: "        runAsNonRoot: true\n        # The image's", new: "        runAsNonRoot: false\n        # The image's",
		wantErr: "runAsNonRoot must be true",
	},
	{
		name: "root uid", file: "base/deployment.yaml",
		old: "runAsUser: 65532", new: "runAsUser: 0",
		wantErr: "runAsUser must be a non-zero uid",
	},
	{
		name: "writable root filesystem", file: "base/deployment.yaml",
		old: "readOnlyRootFilesystem: true", new: "readOnlyRootFilesystem: false",
		wantErr: "readOnlyRootFilesystem must be true",
	},
	{
		name: "privilege escalation", file: "base/deployment.yaml",
		old: "allowPrivilegeEscalation: false", new: "allowPrivilegeEscalation: true",
		wantErr: "allowPrivilegeEscalation must be false",
	},
	{
		name: "capabilities kept", file: "base/deployment.yaml",
		old: "drop: [ALL]", new: "drop: [NET_RAW]",
		wantErr: "capabilities must drop [ALL]",
	},
	{
		name: "no seccomp", file: "base/deployment.yaml",
		old: "type: RuntimeDefault", new: "type: Unconfined",
		wantErr: `seccompProfile must be RuntimeDefault, got "Unconfined"`,
	},
	{
		name: "no memory limit", file: "base/deployment.yaml",
		old: "            cpu: \"2\"\n            memory: 1Gi\n", new: "            cpu: \"2\"\n",
		wantErr: "resources.limits.memory is not set",
	},
	{
		name: "floating image tag", file: "base/deployment.yaml",
		old: "image: ghcr.io/flowlock/flowlock:v0.1.0", new: "image: ghcr.io/flowlock/flowlock:latest",
		wantErr: "is not pinned",
	},
	{
		name: "bad flowlock-authz flag value", file: "base/deployment.yaml",
		old: "        - --log-format=json\n", new: "        - --log-format=jsn\n",
		wantErr: "flowlock-authz would refuse its settings",
	},
	{
		name: "gRPC listener off the container port", file: "base/deployment.yaml",
		old: "        - --grpc-addr=:9191\n", new: "        - --grpc-addr=:9192\n",
		wantErr: "port grpc is 9191, but --grpc-addr is :9192",
	},
	{
		name: "grace period shorter than the drain", file: "base/deployment.yaml",
		old: "terminationGracePeriodSeconds: 30", new: "terminationGracePeriodSeconds: 10",
		wantErr: "terminationGracePeriodSeconds must exceed --shutdown-timeout",
	},
	{
		name: "required admin Secret", file: "base/deployment.yaml",
		old: "              optional: true\n", new: "              optional: false\n",
		wantErr: "needs Secret flowlock-admin",
	},
	{
		name: "service selects other pods", file: "base/service.yaml",
		old: "  selector:\n    app.kubernetes.io/name: flowlock-authz\n", new: "  selector:\n    app.kubernetes.io/name: flowlock\n",
		wantErr: "service flowlock-authz: selector map[app.kubernetes.io/name:flowlock] differs from the deployment's",
	},
	{
		name: "pdb selects other pods", file: "base/pdb.yaml",
		old: "    matchLabels:\n      app.kubernetes.io/name: flowlock-authz\n", new: "    matchLabels:\n      app: flowlock-authz\n",
		wantErr: "pdb flowlock-authz: selector map[app:flowlock-authz] differs",
	},
	{
		name: "pdb that allows all pods down", file: "base/pdb.yaml",
		old: "maxUnavailable: 1", new: "maxUnavailable: 3",
		wantErr: "maxUnavailable 3 lets all 3 replicas go down at once",
	},
	{
		name: "pdb with minAvailable 0", file: "base/pdb.yaml",
		old: "maxUnavailable: 1", new: "minAvailable: 0",
		wantErr: "minAvailable 0 lets all 3 replicas go down at once",
	},
	{
		name: "pdb that blocks every drain", file: "base/pdb.yaml",
		old: "maxUnavailable: 1", new: "minAvailable: 3",
		wantErr: "minAvailable 3 blocks every eviction of 3 replica(s)",
	},
	{
		name: "pdb that blocks the single replica's drain", file: "base/pdb.yaml", overlay: "single",
		old: "maxUnavailable: 1", new: "minAvailable: 1",
		wantErr: "minAvailable 1 blocks every eviction of 1 replica(s)",
	},
	{
		name: "pdb that allows no disruption", file: "base/pdb.yaml",
		old: "maxUnavailable: 1", new: "maxUnavailable: 0",
		wantErr: "maxUnavailable 0 must be from 1 to replicas (3)",
	},
	{
		name: "three replicas without Redis", file: "base/deployment.yaml",
		old:     "        - --redis-addr=flowlock-redis:6379\n        - --redis-password-file=/etc/flowlock/redis/password\n",
		new:     "        - --state-file=/var/lib/flowlock/state.json\n",
		wantErr: "replicas 3 without --redis-addr (or FLOWLOCK_REDIS_ADDR)",
	},
	{
		name: "single overlay raised to three replicas", file: "single/flowlock-authz-single.yaml", overlay: "single",
		old: "  replicas: 1\n", new: "  replicas: 3\n",
		wantErr: "replicas 3 without --redis-addr",
	},
	{
		name: "Redis password as a literal argument", file: "base/deployment.yaml",
		old: "        - --redis-password-file=/etc/flowlock/redis/password\n", new: "        - --redis-password=hunter2hunter2\n",
		wantErr: "a Redis password given as a literal (--redis-password)",
	},
	{
		name: "Redis password as a literal variable", file: "base/deployment.yaml",
		old: "        env:\n", new: "        env:\n        - name: FLOWLOCK_REDIS_PASSWORD\n          value: hunter2hunter2\n",
		wantErr: "a Redis password given as a literal (FLOWLOCK_REDIS_PASSWORD)",
	},
	{
		name: "Redis without a password", file: "base/deployment.yaml",
		old: "        - --redis-password-file=/etc/flowlock/redis/password\n", new: "",
		wantErr: "--redis-addr without --redis-password-file",
	},
	{
		name: "Redis password file not from a Secret", file: "base/deployment.yaml",
		old:     "        secret:\n          secretName: flowlock-redis\n          defaultMode: 288 # 0440\n          items:\n          - key: password\n            path: password\n",
		new:     "        emptyDir: {}\n",
		wantErr: "--redis-password-file /etc/flowlock/redis/password is not on a volume from a Secret",
	},
	{
		name: "external Redis without TLS", file: "external-redis/flowlock-authz-redis.yaml", overlay: "external-redis",
		old: "        - --redis-tls\n", new: "",
		wantErr: "is not a Service of these manifests: the connection leaves the namespace, add --redis-tls",
	},
	{
		name: "Redis address that names no Service", file: "base/deployment.yaml",
		old: "--redis-addr=flowlock-redis:6379", new: "--redis-addr=flowlock-rediss:6379",
		wantErr: "deployment flowlock-redis runs, but --redis-addr flowlock-rediss:6379 does not name its Service",
	},
	{
		name: "Redis address on the wrong port", file: "base/deployment.yaml",
		old: "--redis-addr=flowlock-redis:6379", new: "--redis-addr=flowlock-redis:6380",
		wantErr: "service flowlock-redis has no port 6380",
	},
	{
		name: "Redis password as a literal", file: "in-cluster-redis/redis.yaml",
		old: "        - $(REDIS_PASSWORD)\n", new: "        - hunter2hunter2\n",
		wantErr: "--requirepass is a literal",
	},
	{
		name: "Redis password from another Secret", file: "in-cluster-redis/redis.yaml",
		old:     "        - name: REDIS_PASSWORD\n          valueFrom:\n            secretKeyRef:\n              name: flowlock-redis\n",
		new:     "        - name: REDIS_PASSWORD\n          valueFrom:\n            secretKeyRef:\n              name: redis-auth\n",
		wantErr: "is not from the Secret flowlock-redis that the replicas read",
	},
	{
		name: "Redis without persistence", file: "in-cluster-redis/redis.yaml",
		old: "        - --appendonly\n        - \"yes\"\n", new: "        - --appendonly\n        - \"no\"\n",
		wantErr: "needs --appendonly yes",
	},
	{
		name: "Redis data on an emptyDir", file: "in-cluster-redis/redis.yaml",
		old: "        persistentVolumeClaim:\n          claimName: flowlock-redis-data\n", new: "        emptyDir: {}\n",
		wantErr: "/data is not on a PersistentVolumeClaim",
	},
	{
		name: "Redis that evicts quarantines", file: "in-cluster-redis/redis.yaml",
		old: "        - noeviction\n", new: "        - allkeys-lru\n",
		wantErr: "--maxmemory-policy noeviction",
	},
	{
		name: "Redis as root", file: "in-cluster-redis/redis.yaml",
		old: "runAsUser: 999", new: "runAsUser: 0",
		wantErr: "deployment flowlock-redis: pod securityContext.runAsUser must be a non-zero uid",
	},
	{
		name: "Redis without probes", file: "in-cluster-redis/redis.yaml",
		old: "        readinessProbe:\n", new: "        startupProbe:\n",
		wantErr: "container redis: needs a readinessProbe and a livenessProbe",
	},
	{
		name: "Redis without a memory limit", file: "in-cluster-redis/redis.yaml",
		old: "            cpu: \"1\"\n            memory: 512Mi\n", new: "            cpu: \"1\"\n",
		wantErr: "container redis: resources.limits.memory is not set",
	},
	{
		name: "Redis open to every pod", file: "in-cluster-redis/redis.yaml",
		old:     "  - from:\n    - podSelector:\n        matchLabels:\n          app.kubernetes.io/name: flowlock-authz\n",
		new:     "  - from:\n    - namespaceSelector: {}\n",
		wantErr: "networkpolicy flowlock-redis: ingress rule 0 admits more than Flow Lock's pods",
	},
	{
		name: "Redis network policy on another port", file: "in-cluster-redis/redis.yaml",
		old: "    - port: 6379\n", new: "    - port: 6380\n",
		wantErr: "networkpolicy flowlock-redis: no rule admits Flow Lock's pods to port 6379",
	},
	{
		name: "Redis on a floating tag", file: "in-cluster-redis/redis.yaml",
		old: "image: redis:7.4.5", new: "image: redis:latest",
		wantErr: `image "redis:latest" is not pinned`,
	},
	{
		name: "single replica with a rolling update", file: "single/flowlock-authz-single.yaml", overlay: "single",
		old: "    type: Recreate\n    rollingUpdate: null\n", new: "    type: RollingUpdate\n",
		wantErr: `strategy "RollingUpdate" with a ReadWriteOnce state volume`,
	},
	{
		name: "single replica with state on an emptyDir", file: "single/flowlock-authz-single.yaml", overlay: "single",
		old: "        persistentVolumeClaim:\n          claimName: flowlock-state\n", new: "        emptyDir: {}\n",
		wantErr: "state volume state is not persistent",
	},
	{
		name: "state claim that does not exist", file: "single/flowlock-authz-single.yaml", overlay: "single",
		old: "claimName: flowlock-state", new: "claimName: flowlock-data",
		wantErr: `claims "flowlock-data", but no PersistentVolumeClaim has that name`,
	},
	{
		name: "grpc service port without appProtocol", file: "base/service.yaml",
		old: "    appProtocol: grpc\n", new: "",
		wantErr: "port grpc must have appProtocol grpc",
	},
	{
		name: "resource in another namespace", file: "base/service.yaml",
		old: "  namespace: flowlock\n", new: "  namespace: default\n",
		wantErr: `flowlock-authz is in namespace "default", want "flowlock"`,
	},
	{
		name: "kustomization misses a file", file: "base/kustomization.yaml",
		old: "- pdb.yaml\n", new: "",
		wantErr: "base/pdb.yaml is listed by no kustomization.yaml",
	},
	{
		name: "overlay that does not build", file: "external-redis/kustomization.yaml", overlay: "external-redis",
		old: "- path: flowlock-authz-redis.yaml\n", new: "- path: flowlock-authz-redis.yaml\n- path: missing.yaml\n",
		wantErr: "kustomize build external-redis",
	},
}

func TestKubernetesRejectsBrokenCopies(t *testing.T) {
	files := readTree(t, kubernetesDir)
	for _, tc := range kubernetesBrokenCopies {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkKubernetes(applyEdit(t, files, tc), cmp.Or(tc.overlay, kubernetesOverlays[0]))
			checkRejected(t, "kubernetes", err, tc.wantErr)
		})
	}
}
