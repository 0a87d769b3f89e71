package deploy

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
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

type networkPolicy struct {
	typeMeta
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		PodSelector labelSelector `json:"podSelector"`
		PolicyTypes []string      `json:"policyTypes"`
		Ingress     []struct {
			From []struct {
				NamespaceSelector *labelSelector `json:"namespaceSelector"`
				PodSelector       *labelSelector `json:"podSelector"`
				IPBlock           *struct {
					CIDR   string   `json:"cidr"`
					Except []string `json:"except"`
				} `json:"ipBlock"`
			} `json:"from"`
			Ports []struct {
				Port     any    `json:"port"`
				Protocol string `json:"protocol"`
			} `json:"ports"`
		} `json:"ingress"`
	} `json:"spec"`
}

type kustomization struct {
	typeMeta
	Resources []string `json:"resources"`
}

// k8sObjects are the decoded manifests of deploy/kubernetes.
type k8sObjects struct {
	namespaces    []namespace
	deployments   []deployment
	services      []service
	pdbs          []podDisruptionBudget
	pvcs          []persistentVolumeClaim
	netpols       []networkPolicy
	kustomization *kustomization
	files         []string // YAML files other than kustomization.yaml
}

// decodeKubernetes decodes every document of files (file name -> content)
// into its kind's type. A kind the test does not know is an error, so that
// nothing in the directory goes unchecked.
func decodeKubernetes(files map[string][]byte) (*k8sObjects, error) {
	objs := new(k8sObjects)
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if name != "kustomization.yaml" {
			objs.files = append(objs.files, name)
		}
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
			case "kustomize.config.k8s.io/v1beta1 Kustomization":
				var o kustomization
				err = decodeManifest(doc, &o)
				objs.kustomization = &o
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

// networkPolicyErrors checks that a NetworkPolicy selects Flow Lock's pods,
// restricts ingress, and lets only named sources reach the gRPC port (which
// can get any client quarantined) and the HTTP port (which shows every
// tracked client), each rule with its own port.
func networkPolicyErrors(nps []networkPolicy, sel map[string]string, bad func(string, ...any)) {
	if len(nps) != 1 {
		bad("want exactly one NetworkPolicy for flowlock-authz, got %d", len(nps))
		return
	}
	np := nps[0]
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

// k8sFacts are the values of the Kubernetes manifests that other files must
// agree with.
type k8sFacts struct {
	namespace   string
	serviceName string
	grpcPort    int           // Service port for gRPC
	grpcAppProt string        // its appProtocol
	flowlock    config.Config // flowlock-authz settings from the container args
}

// kubernetesErrors checks the Flow Lock manifests: one replica (Flow Lock's
// state is per process), a disruption budget that does not block drains,
// the state file on a persistent volume, pod hardening, probes, resources,
// flags, and that Deployment, Service and PDB select the same pods.
func kubernetesErrors(o *k8sObjects) (k8sFacts, error) {
	var facts k8sFacts
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if len(o.deployments) != 1 || len(o.services) != 1 || len(o.pdbs) != 1 || len(o.namespaces) != 1 || len(o.pvcs) != 1 {
		bad("want one Namespace, Deployment, Service, PodDisruptionBudget and PersistentVolumeClaim, got %d, %d, %d, %d, %d",
			len(o.namespaces), len(o.deployments), len(o.services), len(o.pdbs), len(o.pvcs))
		return facts, errors.Join(errs...)
	}
	ns, d, svc, pdb, pvc := o.namespaces[0], o.deployments[0], o.services[0], o.pdbs[0], o.pvcs[0]

	// Everything in one namespace, which enforces the restricted profile.
	facts.namespace = ns.Metadata.Name
	for _, m := range []objectMeta{d.Metadata, svc.Metadata, pdb.Metadata, pvc.Metadata} {
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
	networkPolicyErrors(o.netpols, sel, bad)
	for _, tsc := range d.Spec.Template.Spec.TopologySpreadConstraints {
		if !maps.Equal(tsc.LabelSelector.MatchLabels, sel) {
			bad("deployment: topologySpreadConstraints selector %v differs from the deployment's %v", tsc.LabelSelector.MatchLabels, sel)
		}
	}

	// One replica: each replica keeps its own timing records, so more than
	// one would split every client's requests and blur their rhythm.
	if d.Spec.Replicas != 1 {
		bad("deployment: replicas %d, want 1: Flow Lock's timing state is per process, and replicas would each see part of a client's requests", d.Spec.Replicas)
	}
	// Availability: the PDB must allow an eviction, or a drain never ends.
	switch minAvail, maxUnavail := pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable; {
	case (minAvail == nil) == (maxUnavail == nil):
		bad("pdb %s: set exactly one of minAvailable and maxUnavailable", pdb.Metadata.Name)
	case minAvail != nil && !intIn(minAvail, 0, d.Spec.Replicas-1):
		bad("pdb %s: minAvailable %v blocks every eviction of %d replica(s): node drains would never finish", pdb.Metadata.Name, minAvail, d.Spec.Replicas)
	case maxUnavail != nil && !intIn(maxUnavail, 1, d.Spec.Replicas):
		bad("pdb %s: maxUnavailable %v must be from 1 to replicas (%d)", pdb.Metadata.Name, maxUnavail, d.Spec.Replicas)
	}

	pod := d.Spec.Template.Spec
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		bad("deployment: automountServiceAccountToken must be false: Flow Lock does not call the API server")
	}
	sc := pod.SecurityContext
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		bad("deployment: pod securityContext.runAsNonRoot must be true")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		bad("deployment: pod securityContext.runAsUser must be a non-zero uid (the image's USER is a name the kubelet cannot verify)")
	}
	if sc.SeccompProfile.Type != "RuntimeDefault" {
		bad("deployment: pod seccompProfile must be RuntimeDefault, got %q", sc.SeccompProfile.Type)
	}
	if len(pod.Containers) != 1 {
		bad("deployment: want one container, got %d", len(pod.Containers))
		return facts, errors.Join(errs...)
	}
	c := pod.Containers[0]
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
	if csc.RunAsNonRoot != nil && !*csc.RunAsNonRoot {
		bad("container %s: runAsNonRoot overridden to false", c.Name)
	}
	if csc.Privileged != nil && *csc.Privileged {
		bad("container %s: privileged", c.Name)
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

	// flowlock-authz must accept its arguments (with the literal
	// environment; valueFrom variables are not known here).
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		bad("container %s: args %v, want serve and flags", c.Name, c.Args)
	}
	env := make(map[string]string)
	for _, e := range c.Env {
		if e.Value != nil {
			env[e.Name] = *e.Value
		}
		if sk := e.ValueFrom; sk != nil && sk.SecretKeyRef != nil && (sk.SecretKeyRef.Optional == nil || !*sk.SecretKeyRef.Optional) {
			bad("container %s: env %s needs Secret %s: mark it optional or the pod does not start without it", c.Name, e.Name, sk.SecretKeyRef.Name)
		}
	}
	cfg, err := config.Load(c.Args[min(1, len(c.Args)):], func(k string) string { return env[k] })
	if err != nil {
		bad("container %s: flowlock-authz would refuse its settings: %v", c.Name, err)
		return facts, errors.Join(errs...)
	}
	facts.flowlock = cfg
	if pod.TerminationGracePeriodSeconds == nil || time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= cfg.ShutdownTimeout {
		bad("deployment: terminationGracePeriodSeconds must exceed --shutdown-timeout (%v)", cfg.ShutdownTimeout)
	}
	// The quarantine list must outlive the pod: --state-file on the PVC.
	stateVol := ""
	for _, vm := range c.VolumeMounts {
		if cfg.StateFile != "" && strings.HasPrefix(cfg.StateFile, strings.TrimSuffix(vm.MountPath, "/")+"/") && !vm.ReadOnly {
			stateVol = vm.Name
		}
	}
	switch {
	case cfg.StateFile == "":
		bad("container %s: no --state-file: every restart would release every quarantined client", c.Name)
	case stateVol == "":
		bad("container %s: --state-file %s is not on a writable volume (the root filesystem is read-only)", c.Name, cfg.StateFile)
	}
	for _, v := range pod.Volumes {
		if v.Name != stateVol || stateVol == "" {
			continue
		}
		switch {
		case v.PersistentVolumeClaim == nil:
			bad("deployment: state volume %s is not persistent: quarantines would be lost whenever the pod is replaced", v.Name)
		case v.PersistentVolumeClaim.ClaimName != pvc.Metadata.Name:
			bad("deployment: state volume %s claims %q, but the PersistentVolumeClaim is %q", v.Name, v.PersistentVolumeClaim.ClaimName, pvc.Metadata.Name)
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
		case p == nil && name == "startupProbe":
		case p == nil:
			bad("container %s: no %s", c.Name, name)
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

	// kubectl apply -k must apply every file.
	if o.kustomization == nil {
		bad("no kustomization.yaml")
	} else if got := slices.Sorted(slices.Values(o.kustomization.Resources)); !slices.Equal(got, o.files) {
		bad("kustomization.yaml resources %v, want every manifest %v", got, o.files)
	}
	return facts, errors.Join(errs...)
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

func checkKubernetes(files map[string][]byte) (k8sFacts, error) {
	objs, err := decodeKubernetes(files)
	if err != nil {
		return k8sFacts{}, err
	}
	return kubernetesErrors(objs)
}

func loadKubernetes(t *testing.T) k8sFacts {
	t.Helper()
	facts, err := checkKubernetes(readDir(t, kubernetesDir))
	if err != nil {
		t.Fatalf("deploy/kubernetes:\n%v", err)
	}
	return facts
}

func TestKubernetes(t *testing.T) {
	facts := loadKubernetes(t)
	if facts.namespace != "flowlock" || facts.serviceName != "flowlock-authz" || facts.grpcPort != 9191 {
		t.Errorf("facts = %+v, want namespace flowlock, service flowlock-authz, grpc port 9191", facts)
	}
}

// fileEdit is a text mutation of one file of a directory.
type fileEdit struct {
	name, file, old, new string
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
		name: "network policy open to everyone", file: "networkpolicy.yaml",
		old:     "  - from:\n    - namespaceSelector:\n        matchLabels:\n          flowlock.io/checks: \"true\"\n    ports:",
		new:     "  - ports:",
		wantErr: "ingress rule 0 has no from: it admits everyone",
	},
	{
		name: "network policy selects other pods", file: "networkpolicy.yaml",
		old:     "  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: flowlock-authz\n",
		new:     "  podSelector:\n    matchLabels:\n      app: flowlock-authz\n",
		wantErr: "podSelector map[app:flowlock-authz] differs",
	},
	{
		name: "network policy opens every port", file: "networkpolicy.yaml",
		old: "    ports:\n    - port: 8080\n      protocol: TCP\n", new: "",
		wantErr: "ingress rule 1 has no ports: it opens every port",
	},
	{
		name: "field name in the wrong case", file: "deployment.yaml",
		old: "readOnlyRootFilesystem: true", new: "readOnlyRootFileSystem: true",
		wantErr: `unknown object member name "readOnlyRootFileSystem"`,
	},
	{
		name: "unknown field", file: "deployment.yaml",
		old: "          periodSeconds: 5\n", new: "          periodSecond: 5\n",
		wantErr: `unknown object member name "periodSecond"`,
	},
	{
		name: "duplicate key", file: "service.yaml",
		old: "  type: ClusterIP\n", new: "  type: ClusterIP\n  type: NodePort\n",
		wantErr: `key "type" already set in map`,
	},
	{
		name: "unknown kind", file: "pdb.yaml",
		old: "apiVersion: policy/v1\n", new: "apiVersion: policy/v1beta1\n",
		wantErr: `apiVersion "policy/v1beta1" kind "PodDisruptionBudget" is not checked`,
	},
	{
		name: "readiness probe over HTTP", file: "deployment.yaml",
		old:     "        readinessProbe:\n          grpc:\n            port: 9191\n            service: envoy.service.auth.v3.Authorization\n",
		new:     "        readinessProbe:\n          httpGet:\n            path: /readyz\n            port: http\n",
		wantErr: "readinessProbe must be a native grpc probe",
	},
	{
		name: "readiness on the wrong health service", file: "deployment.yaml",
		old: "service: envoy.service.auth.v3.Authorization", new: "service: grpc.health.v1.Health",
		wantErr: "readinessProbe must ask about service envoy.service.auth.v3.Authorization",
	},
	{
		name: "probe on another port", file: "deployment.yaml",
		old: "        livenessProbe:\n          grpc:\n            port: 9191\n", new: "        livenessProbe:\n          grpc:\n            port: 8080\n",
		wantErr: "livenessProbe asks port 8080, but gRPC is on 9191",
	},
	{
		name: "may run as root", file: "deployment.yaml",
		old: "        runAsNonRoot: true\n        # The image's", new: "        runAsNonRoot: false\n        # The image's",
		wantErr: "runAsNonRoot must be true",
	},
	{
		name: "root uid", file: "deployment.yaml",
		old: "runAsUser: 65532", new: "runAsUser: 0",
		wantErr: "runAsUser must be a non-zero uid",
	},
	{
		name: "writable root filesystem", file: "deployment.yaml",
		old: "readOnlyRootFilesystem: true", new: "readOnlyRootFilesystem: false",
		wantErr: "readOnlyRootFilesystem must be true",
	},
	{
		name: "privilege escalation", file: "deployment.yaml",
		old: "allowPrivilegeEscalation: false", new: "allowPrivilegeEscalation: true",
		wantErr: "allowPrivilegeEscalation must be false",
	},
	{
		name: "capabilities kept", file: "deployment.yaml",
		old: "drop: [ALL]", new: "drop: [NET_RAW]",
		wantErr: "capabilities must drop [ALL]",
	},
	{
		name: "no seccomp", file: "deployment.yaml",
		old: "type: RuntimeDefault", new: "type: Unconfined",
		wantErr: `seccompProfile must be RuntimeDefault, got "Unconfined"`,
	},
	{
		name: "no memory limit", file: "deployment.yaml",
		old: "            cpu: \"2\"\n            memory: 1Gi\n", new: "            cpu: \"2\"\n",
		wantErr: "resources.limits.memory is not set",
	},
	{
		name: "floating image tag", file: "deployment.yaml",
		old: "image: ghcr.io/flowlock/flowlock:v0.1.0", new: "image: ghcr.io/flowlock/flowlock:latest",
		wantErr: "is not pinned",
	},
	{
		name: "bad flowlock-authz flag value", file: "deployment.yaml",
		old: "        - --log-format=json\n", new: "        - --log-format=jsn\n",
		wantErr: "flowlock-authz would refuse its settings",
	},
	{
		name: "gRPC listener off the container port", file: "deployment.yaml",
		old: "        - --grpc-addr=:9191\n", new: "        - --grpc-addr=:9192\n",
		wantErr: "port grpc is 9191, but --grpc-addr is :9192",
	},
	{
		name: "grace period shorter than the drain", file: "deployment.yaml",
		old: "terminationGracePeriodSeconds: 30", new: "terminationGracePeriodSeconds: 10",
		wantErr: "terminationGracePeriodSeconds must exceed --shutdown-timeout",
	},
	{
		name: "required admin Secret", file: "deployment.yaml",
		old: "              optional: true\n", new: "              optional: false\n",
		wantErr: "needs Secret flowlock-admin",
	},
	{
		name: "service selects other pods", file: "service.yaml",
		old: "  selector:\n    app.kubernetes.io/name: flowlock-authz\n", new: "  selector:\n    app.kubernetes.io/name: flowlock\n",
		wantErr: "service flowlock-authz: selector map[app.kubernetes.io/name:flowlock] differs from the deployment's",
	},
	{
		name: "pdb selects other pods", file: "pdb.yaml",
		old: "    matchLabels:\n      app.kubernetes.io/name: flowlock-authz\n", new: "    matchLabels:\n      app: flowlock-authz\n",
		wantErr: "pdb flowlock-authz: selector map[app:flowlock-authz] differs",
	},
	{
		name: "pdb that blocks every drain", file: "pdb.yaml",
		old: "maxUnavailable: 1", new: "minAvailable: 1",
		wantErr: "minAvailable 1 blocks every eviction of 1 replica(s)",
	},
	{
		name: "pdb that allows no disruption", file: "pdb.yaml",
		old: "maxUnavailable: 1", new: "maxUnavailable: 0",
		wantErr: "maxUnavailable 0 must be from 1 to replicas (1)",
	},
	{
		name: "replicas that split each client's requests", file: "deployment.yaml",
		old: "replicas: 1", new: "replicas: 2",
		wantErr: "replicas 2, want 1",
	},
	{
		name: "rolling update with a ReadWriteOnce volume", file: "deployment.yaml",
		old: "    type: Recreate\n", new: "    type: RollingUpdate\n",
		wantErr: `strategy "RollingUpdate" with a ReadWriteOnce state volume`,
	},
	{
		name: "state on an emptyDir", file: "deployment.yaml",
		old: "        persistentVolumeClaim:\n          claimName: flowlock-state\n", new: "        emptyDir: {}\n",
		wantErr: "state volume state is not persistent",
	},
	{
		name: "state claim that does not exist", file: "deployment.yaml",
		old: "claimName: flowlock-state", new: "claimName: flowlock-data",
		wantErr: `claims "flowlock-data", but the PersistentVolumeClaim is "flowlock-state"`,
	},
	{
		name: "grpc service port without appProtocol", file: "service.yaml",
		old: "    appProtocol: grpc\n", new: "",
		wantErr: "port grpc must have appProtocol grpc",
	},
	{
		name: "resource in another namespace", file: "service.yaml",
		old: "  namespace: flowlock\n", new: "  namespace: default\n",
		wantErr: `flowlock-authz is in namespace "default", want "flowlock"`,
	},
	{
		name: "kustomization misses a file", file: "kustomization.yaml",
		old: "- pdb.yaml\n", new: "",
		wantErr: "kustomization.yaml resources",
	},
}

func TestKubernetesRejectsBrokenCopies(t *testing.T) {
	files := readDir(t, kubernetesDir)
	for _, tc := range kubernetesBrokenCopies {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkKubernetes(applyEdit(t, files, tc))
			checkRejected(t, "kubernetes", err, tc.wantErr)
		})
	}
}
