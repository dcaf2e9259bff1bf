package helmtest

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

const (
	containerName = "tcpstate-exporter"
	portName      = "http-metrics"
	defaultPort   = 9874
	rulesFile     = "files/tcpstate.rules.yml"
	dashboardGlob = "files/dashboards/*.json"
)

// expectation says what one ci values file must render.
type expectation struct {
	podMode        bool
	port           int32
	fullname       string
	webConfig      bool // a web config Secret and --web.config.file
	tls            bool // the web config serves TLS: HTTPS probes and scrapes
	basicAuth      bool // the web config requires basic auth: TCP probes
	serviceMonitor bool
	podMonitor     bool
	prometheusRule bool
	dashboards     bool
	// extra holds assertions specific to the values file.
	extra func(t *testing.T, r *rendered, values map[string]any)
}

// expectations covers every file in the chart's ci/ folder; a new values
// file fails the test until it gets an entry here.
var expectations = map[string]expectation{
	"default-values.yaml": {
		port: defaultPort, fullname: releaseName + "-tcpstate-exporter",
		extra: checkDefaults,
	},
	"host-monitoring-values.yaml": {
		port: defaultPort, fullname: releaseName + "-tcpstate-exporter",
		serviceMonitor: true, podMonitor: true, prometheusRule: true, dashboards: true,
		extra: checkHostMonitoring,
	},
	"pod-mode-values.yaml": {
		podMode: true, port: defaultPort, fullname: releaseName + "-tcpstate-exporter",
		serviceMonitor: true,
		extra:          checkPodModeValues,
	},
	"webconfig-values.yaml": {
		port: defaultPort, fullname: releaseName + "-tcpstate-exporter",
		webConfig: true, tls: true, basicAuth: true, serviceMonitor: true,
		extra: checkWebConfigValues,
	},
	"webconfig-tls-values.yaml": {
		port: defaultPort, fullname: releaseName + "-tcpstate-exporter",
		webConfig: true, tls: true, podMonitor: true,
		extra: checkWebConfigTLSValues,
	},
	"custom-scheduling-values.yaml": {
		port: 19874, fullname: "tcpstate",
		extra: checkCustomScheduling,
	},
}

func TestChartLintStrict(t *testing.T) {
	helmBinary(t)
	t.Run("no-values", func(t *testing.T) {
		if out, err := runHelm(t, "lint", "--strict", chartDir); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	})
	for _, f := range ciValuesFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if out, err := runHelm(t, "lint", "--strict", "--values", f, chartDir); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

func TestChartCIValues(t *testing.T) {
	helmBinary(t)
	files := ciValuesFiles(t)
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			e, ok := expectations[name]
			if !ok {
				t.Fatalf("ci/%s has no entry in expectations (chart_test.go): add what it must render", name)
			}
			values := readValues(t, f)
			r := render(t, []string{f})
			checkCommon(t, r, e, values)
			if e.extra != nil {
				e.extra(t, r, values)
			}
		})
	}
	for name := range expectations {
		if !slices.ContainsFunc(files, func(f string) bool { return filepath.Base(f) == name }) {
			t.Errorf("expectations lists %s, which is not in %s/ci", name, chartDir)
		}
	}
}

// checkCommon asserts what every render must satisfy, given its expectation.
func checkCommon(t *testing.T, r *rendered, e expectation, values map[string]any) {
	checkMetadata(t, r)

	ds := exactlyOne(t, r.DaemonSets, "DaemonSet")
	if ds.Name != e.fullname || ds.Namespace != releaseNamespace {
		t.Errorf("DaemonSet %s/%s, want %s/%s", ds.Namespace, ds.Name, releaseNamespace, e.fullname)
	}
	podLabels := ds.Spec.Template.Labels
	if ds.Spec.Selector == nil || len(ds.Spec.Selector.MatchLabels) == 0 || len(ds.Spec.Selector.MatchExpressions) != 0 {
		t.Fatalf("DaemonSet selector %+v: want matchLabels only", ds.Spec.Selector)
	}
	if !subset(ds.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("DaemonSet selector %v does not match its pod labels %v", ds.Spec.Selector.MatchLabels, podLabels)
	}
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType ||
		ds.Spec.UpdateStrategy.RollingUpdate == nil || ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable == nil {
		t.Errorf("updateStrategy %+v: want RollingUpdate with maxUnavailable", ds.Spec.UpdateStrategy)
	}
	pod := ds.Spec.Template.Spec
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("pod has %d containers and %d init containers, want 1 and 0", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	if c.Name != containerName || c.Image == "" {
		t.Errorf("container %q image %q", c.Name, c.Image)
	}
	wantPorts := []corev1.ContainerPort{{Name: portName, ContainerPort: e.port, Protocol: corev1.ProtocolTCP}}
	if d := cmp.Diff(wantPorts, c.Ports); d != "" {
		t.Errorf("container ports (-want +got):\n%s", d)
	}

	// Service: selects the DaemonSet's pods on the named port.
	svc := exactlyOne(t, r.Services, "Service")
	if svc.Name != e.fullname || svc.Namespace != releaseNamespace {
		t.Errorf("Service %s/%s, want %s/%s", svc.Namespace, svc.Name, releaseNamespace, e.fullname)
	}
	if d := cmp.Diff(ds.Spec.Selector.MatchLabels, svc.Spec.Selector); d != "" {
		t.Errorf("Service selector differs from the DaemonSet's (-ds +svc):\n%s", d)
	}
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service has %d ports, want 1", len(svc.Spec.Ports))
	}
	sp := svc.Spec.Ports[0]
	if sp.Name != portName || sp.Port != e.port || sp.TargetPort != intstr.FromString(portName) || sp.Protocol != corev1.ProtocolTCP {
		t.Errorf("Service port %+v, want %s %d -> %s", sp, portName, e.port, portName)
	}

	checkArgs(t, c, e)
	checkSecurity(t, ds, e)
	checkRBAC(t, r, ds, e)
	checkProbes(t, c, e)
	checkWebConfig(t, r, ds, e)

	for _, res := range []struct {
		list corev1.ResourceList
		name corev1.ResourceName
	}{
		{c.Resources.Requests, corev1.ResourceCPU},
		{c.Resources.Requests, corev1.ResourceMemory},
		{c.Resources.Limits, corev1.ResourceMemory},
	} {
		q, ok := res.list[res.name]
		if !ok || q.IsZero() {
			t.Errorf("container resources %+v lack %s", c.Resources, res.name)
		}
	}

	// ServiceAccount: the pod runs as the one the chart made.
	if sa := r.ServiceAccounts; len(sa) > 0 {
		if len(sa) != 1 || sa[0].Name != pod.ServiceAccountName || sa[0].Namespace != releaseNamespace {
			t.Errorf("ServiceAccounts %+v, pod uses %q", sa, pod.ServiceAccountName)
		}
	}

	checkServiceMonitor(t, r, svc, e)
	checkPodMonitor(t, r, ds, e)
	checkPrometheusRule(t, r, e, values)
	checkDashboards(t, r, e, values)
}

// checkMetadata asserts every object carries valid names and the chart's
// standard labels.
func checkMetadata(t *testing.T, r *rendered) {
	for key, obj := range r.Generic {
		meta, _ := obj["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			t.Errorf("%s: name %q: %s", key, name, msg)
		}
		labels, _ := meta["labels"].(map[string]any)
		for k, v := range labels {
			for _, msg := range validation.IsQualifiedName(k) {
				t.Errorf("%s: label key %q: %s", key, k, msg)
			}
			s, ok := v.(string)
			if !ok {
				t.Errorf("%s: label %s=%v is not a string", key, k, v)
				continue
			}
			for _, msg := range validation.IsValidLabelValue(s) {
				t.Errorf("%s: label %s=%q: %s", key, k, s, msg)
			}
		}
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if _, ok := labels[k]; !ok {
				t.Errorf("%s lacks label %s", key, k)
			}
		}
	}
}

func checkArgs(t *testing.T, c corev1.Container, e expectation) {
	if len(c.Command) != 0 {
		t.Errorf("container command %q overrides the image entrypoint", c.Command)
	}
	mode := "host"
	if e.podMode {
		mode = "all"
	}
	want := []string{fmt.Sprintf("--web.listen-address=:%d", e.port), "--netns=" + mode}
	if e.webConfig {
		want = append(want, "--web.config.file=/etc/tcpstate-exporter/web/web-config.yml")
	}
	if len(c.Args) < len(want) || !slices.Equal(c.Args[:len(want)], want) {
		t.Errorf("args %q, want them to start with %q", c.Args, want)
	}
	for _, a := range c.Args[min(len(want), len(c.Args)):] {
		if strings.HasPrefix(a, "--netns") || strings.HasPrefix(a, "--web.listen-address") || strings.HasPrefix(a, "--web.config.file") {
			t.Errorf("arg %q repeated after the chart's own", a)
		}
	}
}

// checkSecurity asserts the exact security settings of each mode.
func checkSecurity(t *testing.T, ds *appsv1.DaemonSet, e expectation) {
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork %v dnsPolicy %q, want true and ClusterFirstWithHostNet", pod.HostNetwork, pod.DNSPolicy)
	}
	if pod.HostIPC {
		t.Error("hostIPC set")
	}
	if pod.HostPID != e.podMode {
		t.Errorf("hostPID %v, want %v", pod.HostPID, e.podMode)
	}
	wantPodSC := &corev1.PodSecurityContext{
		RunAsNonRoot: ptr(true), RunAsUser: ptr[int64](65534), RunAsGroup: ptr[int64](65534), FSGroup: ptr[int64](65534),
	}
	wantCaps := &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
	if e.podMode {
		wantPodSC = &corev1.PodSecurityContext{RunAsNonRoot: ptr(false), RunAsUser: ptr[int64](0), RunAsGroup: ptr[int64](0)}
		wantCaps.Add = []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE"}
	}
	wantSC := &corev1.SecurityContext{
		Capabilities:             wantCaps,
		ReadOnlyRootFilesystem:   ptr(true),
		AllowPrivilegeEscalation: ptr(false),
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if d := cmp.Diff(wantPodSC, pod.SecurityContext); d != "" {
		t.Errorf("pod securityContext (-want +got):\n%s", d)
	}
	if d := cmp.Diff(wantSC, c.SecurityContext); d != "" {
		t.Errorf("container securityContext (-want +got):\n%s", d)
	}

	var hostPaths []corev1.Volume
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths = append(hostPaths, v)
		}
	}
	nodeName := findEnv(c.Env, "NODE_NAME")
	if !e.podMode {
		if len(hostPaths) != 0 {
			t.Errorf("host mode mounts host paths: %+v", hostPaths)
		}
		if nodeName != nil {
			t.Errorf("host mode sets NODE_NAME: %+v", nodeName)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("host mode mounts the API token (automountServiceAccountToken %v)", pod.AutomountServiceAccountToken)
		}
		return
	}
	if nodeName == nil || nodeName.ValueFrom == nil || nodeName.ValueFrom.FieldRef == nil ||
		nodeName.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("pod mode: NODE_NAME is %+v, want a fieldRef to spec.nodeName", nodeName)
	}
	if pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
		t.Error("pod mode does not mount the API token the pod watch needs")
	}
	checkNetnsMounts(t, ds, []string{"/run/netns"})
}

// checkNetnsMounts asserts the pod mounts exactly the given host netns
// directories, read-only, with host-to-container propagation.
func checkNetnsMounts(t *testing.T, ds *appsv1.DaemonSet, dirs []string) {
	t.Helper()
	pod := ds.Spec.Template.Spec
	var got []string
	for _, v := range pod.Volumes {
		if v.HostPath == nil {
			continue
		}
		got = append(got, v.HostPath.Path)
		if v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectoryOrCreate {
			t.Errorf("hostPath %s type %v, want DirectoryOrCreate", v.HostPath.Path, v.HostPath.Type)
		}
		m := findMount(pod.Containers[0].VolumeMounts, v.Name)
		if m == nil {
			t.Errorf("hostPath volume %s is not mounted", v.Name)
			continue
		}
		if !m.ReadOnly || m.MountPath != v.HostPath.Path || m.MountPropagation == nil ||
			*m.MountPropagation != corev1.MountPropagationHostToContainer {
			t.Errorf("mount of %s: %+v, want read-only at the same path with HostToContainer", v.HostPath.Path, m)
		}
	}
	if !slices.Equal(got, dirs) {
		t.Errorf("host paths %q, want %q", got, dirs)
	}
}

// checkRBAC asserts a read-only ClusterRole on pods exists in pod mode only,
// bound to the pod's ServiceAccount.
func checkRBAC(t *testing.T, r *rendered, ds *appsv1.DaemonSet, e expectation) {
	if !e.podMode {
		if len(r.ClusterRoles)+len(r.ClusterRoleBindings) != 0 {
			t.Errorf("host mode renders RBAC: %d ClusterRoles, %d bindings", len(r.ClusterRoles), len(r.ClusterRoleBindings))
		}
		return
	}
	role := exactlyOne(t, r.ClusterRoles, "ClusterRole")
	want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}}
	if d := cmp.Diff(want, role.Rules); d != "" {
		t.Errorf("ClusterRole rules (-want +got):\n%s", d)
	}
	if role.AggregationRule != nil {
		t.Error("ClusterRole aggregates other roles")
	}
	b := exactlyOne(t, r.ClusterRoleBindings, "ClusterRoleBinding")
	wantRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name}
	if b.RoleRef != wantRef {
		t.Errorf("binding roleRef %+v, want %+v", b.RoleRef, wantRef)
	}
	wantSubj := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: ds.Spec.Template.Spec.ServiceAccountName, Namespace: releaseNamespace}}
	if d := cmp.Diff(wantSubj, b.Subjects); d != "" {
		t.Errorf("binding subjects (-want +got):\n%s", d)
	}
}

func checkProbes(t *testing.T, c corev1.Container, e expectation) {
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"liveness", c.LivenessProbe, "/-/healthy"},
		{"readiness", c.ReadinessProbe, "/-/ready"},
	} {
		if p.probe == nil {
			t.Errorf("no %s probe", p.name)
			continue
		}
		if e.basicAuth {
			// The kubelet cannot send credentials without a password in
			// the pod spec, so the chart checks the port instead.
			want := corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString(portName)}}
			if d := cmp.Diff(want, p.probe.ProbeHandler); d != "" {
				t.Errorf("%s probe with basic auth (-want +got):\n%s", p.name, d)
			}
			continue
		}
		scheme := corev1.URISchemeHTTP
		if e.tls {
			scheme = corev1.URISchemeHTTPS
		}
		want := corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: p.path, Port: intstr.FromString(portName), Scheme: scheme}}
		if d := cmp.Diff(want, p.probe.ProbeHandler); d != "" {
			t.Errorf("%s probe (-want +got):\n%s", p.name, d)
		}
		if p.probe.PeriodSeconds <= 0 || p.probe.TimeoutSeconds <= 0 || p.probe.FailureThreshold <= 0 {
			t.Errorf("%s probe timing %+v", p.name, p.probe)
		}
	}
}

// checkWebConfig asserts the web config Secret, its mount and the flag
// agree, or that none of them is rendered.
func checkWebConfig(t *testing.T, r *rendered, ds *appsv1.DaemonSet, e expectation) {
	pod := ds.Spec.Template.Spec
	if !e.webConfig {
		if len(r.Secrets) != 0 {
			t.Errorf("Secrets rendered without a web config: %d", len(r.Secrets))
		}
		if _, ok := ds.Spec.Template.Annotations["checksum/web-config"]; ok {
			t.Error("checksum/web-config annotation without a web config")
		}
		return
	}
	sec := exactlyOne(t, r.Secrets, "Secret")
	if sec.Name != e.fullname+"-web-config" || sec.Namespace != releaseNamespace {
		t.Errorf("Secret %s/%s", sec.Namespace, sec.Name)
	}
	text, ok := sec.StringData["web-config.yml"]
	if !ok || len(sec.StringData)+len(sec.Data) != 1 {
		t.Fatalf("Secret keys: stringData %v data %v, want web-config.yml only", keys(sec.StringData), keys(sec.Data))
	}
	var cfg map[string]any
	if err := yaml.UnmarshalStrict([]byte(text), &cfg); err != nil {
		t.Fatalf("web config is not YAML: %v\n%s", err, text)
	}
	if _, has := cfg["tls_server_config"]; has != e.tls {
		t.Errorf("web config tls_server_config present %v, want %v", has, e.tls)
	}
	if _, has := cfg["basic_auth_users"]; has != e.basicAuth {
		t.Errorf("web config basic_auth_users present %v, want %v", has, e.basicAuth)
	}
	if ds.Spec.Template.Annotations["checksum/web-config"] == "" {
		t.Error("pod template lacks the checksum/web-config annotation that rolls pods on change")
	}

	// The flag's path must be the Secret's key inside a read-only mount.
	const flag = "--web.config.file="
	var file string
	for _, a := range pod.Containers[0].Args {
		if strings.HasPrefix(a, flag) {
			file = strings.TrimPrefix(a, flag)
		}
	}
	var vol *corev1.Volume
	for i := range pod.Volumes {
		if s := pod.Volumes[i].Secret; s != nil && s.SecretName == sec.Name {
			vol = &pod.Volumes[i]
		}
	}
	if vol == nil {
		t.Fatalf("no volume of Secret %s", sec.Name)
	}
	m := findMount(pod.Containers[0].VolumeMounts, vol.Name)
	if m == nil || !m.ReadOnly || m.SubPath != "" || path.Join(m.MountPath, "web-config.yml") != file {
		t.Errorf("web config mount %+v does not hold %s read-only", m, file)
	}
}

func checkServiceMonitor(t *testing.T, r *rendered, svc *corev1.Service, e expectation) {
	if !e.serviceMonitor {
		if len(r.ServiceMonitors) != 0 {
			t.Errorf("%d ServiceMonitors rendered, want none", len(r.ServiceMonitors))
		}
		return
	}
	sm := exactlyOne(t, r.ServiceMonitors, "ServiceMonitor")
	if len(sm.Spec.Selector.MatchExpressions) != 0 || len(sm.Spec.Selector.MatchLabels) == 0 ||
		!subset(sm.Spec.Selector.MatchLabels, svc.Labels) {
		t.Errorf("ServiceMonitor selector %+v does not select the Service labels %v", sm.Spec.Selector, svc.Labels)
	}
	if !slices.Contains(sm.Spec.NamespaceSelector.MatchNames, svc.Namespace) && !sm.Spec.NamespaceSelector.Any {
		t.Errorf("ServiceMonitor namespaceSelector %+v misses the Service namespace %s", sm.Spec.NamespaceSelector, svc.Namespace)
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor has %d endpoints, want 1", len(sm.Spec.Endpoints))
	}
	ep := sm.Spec.Endpoints[0]
	if ep.Port != svc.Spec.Ports[0].Name {
		t.Errorf("ServiceMonitor port %q, Service port is %q", ep.Port, svc.Spec.Ports[0].Name)
	}
	if !ep.HonorLabels {
		t.Error("ServiceMonitor honorLabels is false: pod-mode namespace/pod labels would be renamed")
	}
	checkScrape(t, "ServiceMonitor", ep.Path, ep.Scheme, e)
}

func checkPodMonitor(t *testing.T, r *rendered, ds *appsv1.DaemonSet, e expectation) {
	if !e.podMonitor {
		if len(r.PodMonitors) != 0 {
			t.Errorf("%d PodMonitors rendered, want none", len(r.PodMonitors))
		}
		return
	}
	pm := exactlyOne(t, r.PodMonitors, "PodMonitor")
	if len(pm.Spec.Selector.MatchExpressions) != 0 || len(pm.Spec.Selector.MatchLabels) == 0 ||
		!subset(pm.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
		t.Errorf("PodMonitor selector %+v does not select the pod labels %v", pm.Spec.Selector, ds.Spec.Template.Labels)
	}
	if !slices.Contains(pm.Spec.NamespaceSelector.MatchNames, ds.Namespace) && !pm.Spec.NamespaceSelector.Any {
		t.Errorf("PodMonitor namespaceSelector %+v misses the pods' namespace %s", pm.Spec.NamespaceSelector, ds.Namespace)
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("PodMonitor has %d endpoints, want 1", len(pm.Spec.PodMetricsEndpoints))
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if ep.Port == nil || *ep.Port != ds.Spec.Template.Spec.Containers[0].Ports[0].Name {
		t.Errorf("PodMonitor port %v, container port is %q", ep.Port, ds.Spec.Template.Spec.Containers[0].Ports[0].Name)
	}
	if !ep.HonorLabels {
		t.Error("PodMonitor honorLabels is false: pod-mode namespace/pod labels would be renamed")
	}
	checkScrape(t, "PodMonitor", ep.Path, ep.Scheme, e)
}

func checkScrape(t *testing.T, kind, path string, scheme *monitoringv1.Scheme, e expectation) {
	if path != "/metrics" {
		t.Errorf("%s path %q, want /metrics", kind, path)
	}
	want := "http"
	if e.tls {
		want = "https"
	}
	if scheme == nil || strings.ToLower(string(*scheme)) != want {
		t.Errorf("%s scheme %v, want %s", kind, scheme, want)
	}
}

// checkPrometheusRule asserts the rule groups are the chart's rules file,
// unchanged, followed by prometheusRule.additionalGroups.
func checkPrometheusRule(t *testing.T, r *rendered, e expectation, values map[string]any) {
	if !e.prometheusRule {
		if len(r.PrometheusRules) != 0 {
			t.Errorf("%d PrometheusRules rendered, want none", len(r.PrometheusRules))
		}
		return
	}
	pr := exactlyOne(t, r.PrometheusRules, "PrometheusRule")
	b, err := os.ReadFile(filepath.Join(chartDir, rulesFile))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	want, _ := file["groups"].([]any)
	if len(want) == 0 {
		t.Fatalf("%s has no groups", rulesFile)
	}
	if extra, ok := lookup(values, "prometheusRule", "additionalGroups").([]any); ok {
		want = append(want, extra...)
	}
	spec, _ := r.Generic["PrometheusRule/"+pr.Name]["spec"].(map[string]any)
	if d := cmp.Diff(want, spec["groups"]); d != "" {
		t.Errorf("PrometheusRule groups differ from %s + additionalGroups (-want +got):\n%s", rulesFile, d)
	}
	if len(pr.Spec.Groups) != len(want) {
		t.Errorf("typed PrometheusRule has %d groups, want %d", len(pr.Spec.Groups), len(want))
	}
	for _, g := range pr.Spec.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("rule group %+v: empty name or no rules", g)
		}
		for _, rule := range g.Rules {
			if (rule.Record == "") == (rule.Alert == "") || rule.Expr.String() == "" {
				t.Errorf("group %s: rule %+v must have exactly one of record/alert and an expr", g.Name, rule)
			}
		}
	}
}

// checkDashboards asserts one sidecar-labelled ConfigMap per dashboard file,
// each holding that file, valid JSON, unchanged.
func checkDashboards(t *testing.T, r *rendered, e expectation, values map[string]any) {
	if !e.dashboards {
		if len(r.ConfigMaps) != 0 {
			t.Errorf("%d ConfigMaps rendered without dashboards", len(r.ConfigMaps))
		}
		return
	}
	labelKey, labelValue := "grafana_dashboard", "1"
	if k, ok := lookup(values, "grafanaDashboards", "label", "key").(string); ok {
		labelKey = k
	}
	if v, ok := lookup(values, "grafanaDashboards", "label", "value").(string); ok {
		labelValue = v
	}
	files, err := filepath.Glob(filepath.Join(chartDir, dashboardGlob))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no %s in the chart", dashboardGlob)
	}
	want := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want[filepath.Base(f)] = string(b)
	}
	got := map[string]string{}
	for _, cm := range r.ConfigMaps {
		if cm.Labels[labelKey] != labelValue {
			t.Errorf("ConfigMap %s lacks the sidecar label %s=%q: %v", cm.Name, labelKey, labelValue, cm.Labels)
		}
		if len(cm.Data) != 1 || len(cm.BinaryData) != 0 {
			t.Errorf("ConfigMap %s holds %d entries, want one dashboard", cm.Name, len(cm.Data)+len(cm.BinaryData))
		}
		for k, v := range cm.Data {
			if _, dup := got[k]; dup {
				t.Errorf("dashboard %s rendered twice", k)
			}
			got[k] = v
			var dash map[string]any
			if err := json.Unmarshal([]byte(v), &dash); err != nil {
				t.Errorf("ConfigMap %s key %s is not a JSON object: %v", cm.Name, k, err)
				continue
			}
			if title, _ := dash["title"].(string); title == "" {
				t.Errorf("dashboard %s has no title", k)
			}
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("dashboard ConfigMaps differ from %s (-files +rendered):\n%s", dashboardGlob, d)
	}
}

func checkDefaults(t *testing.T, r *rendered, _ map[string]any) {
	if n := len(r.Generic); n != 3 {
		t.Errorf("default render has %d objects (%v), want ServiceAccount, Service, DaemonSet", n, keys(r.Generic))
	}
	ds := r.DaemonSets[0]
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	if want := "ghcr.io/tcpstate/tcpstate-exporter:" + chartAppVersion(t); c.Image != want {
		t.Errorf("image %q, want %q (tag defaults to appVersion)", c.Image, want)
	}
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("imagePullPolicy %q", c.ImagePullPolicy)
	}
	// Every taint tolerated, Linux nodes only: one pod on every node.
	if d := cmp.Diff([]corev1.Toleration{{Operator: corev1.TolerationOpExists}}, pod.Tolerations); d != "" {
		t.Errorf("tolerations (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]string{"kubernetes.io/os": "linux"}, pod.NodeSelector); d != "" {
		t.Errorf("nodeSelector (-want +got):\n%s", d)
	}
	if pod.Affinity != nil || pod.PriorityClassName != "" || len(pod.ImagePullSecrets) != 0 {
		t.Errorf("affinity %+v priorityClassName %q imagePullSecrets %v, want none", pod.Affinity, pod.PriorityClassName, pod.ImagePullSecrets)
	}
	wantRes := map[string]string{"requests.cpu": "60m", "requests.memory": "40Mi", "limits.memory": "128Mi"}
	if d := cmp.Diff(wantRes, resourceStrings(c.Resources)); d != "" {
		t.Errorf("resources (-want +got):\n%s", d)
	}
	if mu := ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable; mu == nil || *mu != intstr.FromInt32(1) {
		t.Errorf("maxUnavailable %v, want 1", mu)
	}
	if len(c.Args) != 2 || len(c.Env) != 0 {
		t.Errorf("args %q env %v, want the chart's two flags and no env", c.Args, c.Env)
	}
	sa := exactlyOne(t, r.ServiceAccounts, "ServiceAccount")
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount automountServiceAccountToken %v, want false", sa.AutomountServiceAccountToken)
	}
}

func checkHostMonitoring(t *testing.T, r *rendered, _ map[string]any) {
	sm := r.ServiceMonitors[0]
	ep := sm.Spec.Endpoints[0]
	if sm.Namespace != releaseNamespace || ep.Interval != "30s" || ep.ScrapeTimeout != "10s" {
		t.Errorf("ServiceMonitor namespace %q interval %q scrapeTimeout %q", sm.Namespace, ep.Interval, ep.ScrapeTimeout)
	}
	if sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v lack additionalLabels", sm.Labels)
	}
	if len(ep.RelabelConfigs) != 1 || ep.RelabelConfigs[0].TargetLabel != "node" ||
		len(ep.RelabelConfigs[0].SourceLabels) != 1 || ep.RelabelConfigs[0].SourceLabels[0] != "__meta_kubernetes_pod_node_name" {
		t.Errorf("relabelings %+v", ep.RelabelConfigs)
	}
	if len(ep.MetricRelabelConfigs) != 1 || ep.MetricRelabelConfigs[0].Action != "drop" || ep.MetricRelabelConfigs[0].Regex != "tcpstate_build_info" {
		t.Errorf("metricRelabelings %+v", ep.MetricRelabelConfigs)
	}
	pm := r.PodMonitors[0]
	if pm.Namespace != "monitoring" || pm.Spec.PodMetricsEndpoints[0].Interval != "15s" || pm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("PodMonitor namespace %q interval %q labels %v", pm.Namespace, pm.Spec.PodMetricsEndpoints[0].Interval, pm.Labels)
	}
	pr := r.PrometheusRules[0]
	if pr.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("PrometheusRule labels %v lack additionalLabels", pr.Labels)
	}
	last := pr.Spec.Groups[len(pr.Spec.Groups)-1]
	if last.Name != "site-tcpstate" || len(last.Rules) != 1 || last.Rules[0].Alert != "TCPStateManyTimeWait" ||
		last.Rules[0].For == nil || *last.Rules[0].For != "10m" || last.Rules[0].Labels["severity"] != "warning" {
		t.Errorf("additional group not appended as given: %+v", last)
	}
	for _, cm := range r.ConfigMaps {
		if cm.Namespace != "monitoring" || cm.Annotations["grafana_folder"] != "Networking" || cm.Labels["team"] != "platform" {
			t.Errorf("dashboard ConfigMap %s/%s annotations %v labels %v", cm.Namespace, cm.Name, cm.Annotations, cm.Labels)
		}
	}
	svc := r.Services[0]
	if svc.Annotations["prometheus.io/scrape"] != "true" || svc.Labels["scrape"] != "tcpstate" {
		t.Errorf("Service annotations %v labels %v", svc.Annotations, svc.Labels)
	}
}

func checkPodModeValues(t *testing.T, r *rendered, _ map[string]any) {
	sa := exactlyOne(t, r.ServiceAccounts, "ServiceAccount")
	if sa.Name != "tcpstate-pods" || sa.Annotations["example.com/owner"] != "platform" {
		t.Errorf("ServiceAccount %s annotations %v", sa.Name, sa.Annotations)
	}
	if got := r.DaemonSets[0].Spec.Template.Spec.ServiceAccountName; got != "tcpstate-pods" {
		t.Errorf("pod serviceAccountName %q", got)
	}
}

func checkWebConfigValues(t *testing.T, r *rendered, _ map[string]any) {
	ep := r.ServiceMonitors[0].Spec.Endpoints[0]
	if ep.TLSConfig == nil || ep.TLSConfig.InsecureSkipVerify == nil || !*ep.TLSConfig.InsecureSkipVerify {
		t.Errorf("ServiceMonitor tlsConfig %+v", ep.TLSConfig)
	}
	if ep.BasicAuth == nil || ep.BasicAuth.Username.Name != "tcpstate-scrape" || ep.BasicAuth.Password.Key != "password" {
		t.Errorf("ServiceMonitor basicAuth %+v", ep.BasicAuth)
	}
	checkTLSMount(t, r.DaemonSets[0])
}

func checkWebConfigTLSValues(t *testing.T, r *rendered, _ map[string]any) {
	ep := r.PodMonitors[0].Spec.PodMetricsEndpoints[0]
	if ep.TLSConfig == nil || ep.TLSConfig.InsecureSkipVerify == nil || !*ep.TLSConfig.InsecureSkipVerify {
		t.Errorf("PodMonitor tlsConfig %+v", ep.TLSConfig)
	}
	checkTLSMount(t, r.DaemonSets[0])
}

// checkTLSMount asserts the certificate Secret named in extraVolumes is
// mounted where the web config looks for it.
func checkTLSMount(t *testing.T, ds appsv1.DaemonSet) {
	pod := ds.Spec.Template.Spec
	m := findMount(pod.Containers[0].VolumeMounts, "tls")
	if m == nil || m.MountPath != "/etc/tcpstate-exporter/tls" || !m.ReadOnly {
		t.Errorf("tls mount %+v", m)
	}
	found := false
	for _, v := range pod.Volumes {
		if v.Name == "tls" && v.Secret != nil && v.Secret.SecretName == "tcpstate-exporter-tls" {
			found = true
		}
	}
	if !found {
		t.Errorf("no tls Secret volume in %+v", pod.Volumes)
	}
}

func checkCustomScheduling(t *testing.T, r *rendered, _ map[string]any) {
	ds := r.DaemonSets[0]
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	wantImage := "registry.example.com/tcpstate-exporter:v0.2.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	if c.Image != wantImage || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %q pullPolicy %q, want %q Always", c.Image, c.ImagePullPolicy, wantImage)
	}
	if d := cmp.Diff([]corev1.LocalObjectReference{{Name: "registry-example"}}, pod.ImagePullSecrets); d != "" {
		t.Errorf("imagePullSecrets (-want +got):\n%s", d)
	}
	wantRes := map[string]string{"requests.cpu": "100m", "requests.memory": "48Mi", "limits.cpu": "500m", "limits.memory": "128Mi"}
	if d := cmp.Diff(wantRes, resourceStrings(c.Resources)); d != "" {
		t.Errorf("resources (-want +got):\n%s", d)
	}
	wantTol := []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "ingress", Effect: corev1.TaintEffectNoSchedule}}
	if d := cmp.Diff(wantTol, pod.Tolerations); d != "" {
		t.Errorf("tolerations (-want +got):\n%s", d)
	}
	wantSel := map[string]string{"kubernetes.io/os": "linux", "node-role.example.com/edge": "true"}
	if d := cmp.Diff(wantSel, pod.NodeSelector); d != "" {
		t.Errorf("nodeSelector (-want +got):\n%s", d)
	}
	na := pod.Affinity
	if na == nil || na.NodeAffinity == nil || na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil ||
		na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Key != "eks.amazonaws.com/compute-type" {
		t.Errorf("affinity %+v", na)
	}
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", pod.PriorityClassName)
	}
	wantArgs := []string{"--web.listen-address=:19874", "--netns=host",
		"--sample.cpu-budget=0.1", "--collector.destinations.max=100", "--log.level=debug"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args %q, want %q", c.Args, wantArgs)
	}
	if d := cmp.Diff([]corev1.EnvVar{{Name: "GOMEMLIMIT", Value: "100MiB"}}, c.Env); d != "" {
		t.Errorf("env (-want +got):\n%s", d)
	}
	if ds.Spec.Template.Annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] != "true" || ds.Spec.Template.Labels["team"] != "platform" {
		t.Errorf("pod annotations %v labels %v", ds.Spec.Template.Annotations, ds.Spec.Template.Labels)
	}
	if mu := ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable; mu == nil || *mu != intstr.FromString("10%") {
		t.Errorf("maxUnavailable %v, want 10%%", mu)
	}
}

func TestNetnsModeValidated(t *testing.T) {
	helmBinary(t)
	// The values schema rejects an unknown mode...
	_, err := runHelm(t, templateArgs(nil, "--set", "netnsMode=pods")...)
	if err == nil || !strings.Contains(err.Error(), "netnsMode") {
		t.Errorf("netnsMode=pods rendered or failed without naming netnsMode: %v", err)
	}
	// ...and so does the template when the schema is skipped.
	_, err = runHelm(t, templateArgs(nil, "--set", "netnsMode=pods", "--skip-schema-validation")...)
	if err == nil || !strings.Contains(err.Error(), `netnsMode must be "host" or "all"`) {
		t.Errorf("template accepted netnsMode=pods: %v", err)
	}
}

func TestUnknownValueRejected(t *testing.T) {
	helmBinary(t)
	_, err := runHelm(t, templateArgs(nil, "--set", "servce.port=1")...)
	if err == nil || !strings.Contains(err.Error(), "servce") {
		t.Errorf("a misspelt top-level value was accepted: %v", err)
	}
}

func TestPodModeExtraNetnsDirs(t *testing.T) {
	helmBinary(t)
	r := render(t, nil, "--set", "netnsMode=all", "--set", "netnsHostDirs={/run/netns,/var/run/netns}")
	checkNetnsMounts(t, exactlyOne(t, r.DaemonSets, "DaemonSet"), []string{"/run/netns", "/var/run/netns"})
}

func TestPodModeWithoutRBAC(t *testing.T) {
	helmBinary(t)
	r := render(t, nil, "--set", "netnsMode=all", "--set", "rbac.create=false")
	if len(r.ClusterRoles)+len(r.ClusterRoleBindings) != 0 {
		t.Errorf("rbac.create=false still renders %d ClusterRoles and %d bindings", len(r.ClusterRoles), len(r.ClusterRoleBindings))
	}
	ds := exactlyOne(t, r.DaemonSets, "DaemonSet")
	if !ds.Spec.Template.Spec.HostPID || findEnv(ds.Spec.Template.Spec.Containers[0].Env, "NODE_NAME") == nil {
		t.Error("pod mode without RBAC lost hostPID or NODE_NAME")
	}
}

func TestServiceAccountNotCreated(t *testing.T) {
	helmBinary(t)
	r := render(t, nil, "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=existing", "--set", "netnsMode=all")
	if len(r.ServiceAccounts) != 0 {
		t.Errorf("serviceAccount.create=false still renders %d ServiceAccounts", len(r.ServiceAccounts))
	}
	ds := exactlyOne(t, r.DaemonSets, "DaemonSet")
	if ds.Spec.Template.Spec.ServiceAccountName != "existing" {
		t.Errorf("pod serviceAccountName %q, want existing", ds.Spec.Template.Spec.ServiceAccountName)
	}
	b := exactlyOne(t, r.ClusterRoleBindings, "ClusterRoleBinding")
	if len(b.Subjects) != 1 || b.Subjects[0].Name != "existing" {
		t.Errorf("binding subjects %+v, want the existing ServiceAccount", b.Subjects)
	}
}

func TestDashboardSidecarLabelConfigurable(t *testing.T) {
	helmBinary(t)
	r := render(t, nil, "--set", "grafanaDashboards.enabled=true",
		"--set", "grafanaDashboards.label.key=grafana.example.com/dashboard",
		"--set-string", "grafanaDashboards.label.value=yes")
	if len(r.ConfigMaps) == 0 {
		t.Fatal("no dashboard ConfigMap")
	}
	for _, cm := range r.ConfigMaps {
		if cm.Labels["grafana.example.com/dashboard"] != "yes" {
			t.Errorf("ConfigMap %s labels %v", cm.Name, cm.Labels)
		}
		if _, ok := cm.Labels["grafana_dashboard"]; ok {
			t.Errorf("ConfigMap %s kept the default label", cm.Name)
		}
		if len(cm.Annotations) != 0 {
			t.Errorf("ConfigMap %s has annotations %v without a folder", cm.Name, cm.Annotations)
		}
	}
}

// chartAppVersion reads appVersion from Chart.yaml.
func chartAppVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil || c.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion %q: %v", c.AppVersion, err)
	}
	return c.AppVersion
}

func exactlyOne[T any](t *testing.T, list []T, what string) *T {
	t.Helper()
	if len(list) != 1 {
		t.Fatalf("rendered %d %s objects, want 1", len(list), what)
	}
	return &list[0]
}

// subset reports whether every entry of sel is in labels.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func findEnv(env []corev1.EnvVar, name string) *corev1.EnvVar {
	for i := range env {
		if env[i].Name == name {
			return &env[i]
		}
	}
	return nil
}

func findMount(mounts []corev1.VolumeMount, name string) *corev1.VolumeMount {
	for i := range mounts {
		if mounts[i].Name == name {
			return &mounts[i]
		}
	}
	return nil
}

// resourceStrings flattens requirements into "requests.cpu" -> "50m".
func resourceStrings(r corev1.ResourceRequirements) map[string]string {
	out := map[string]string{}
	for k, q := range r.Requests {
		out["requests."+string(k)] = q.String()
	}
	for k, q := range r.Limits {
		out["limits."+string(k)] = q.String()
	}
	return out
}

// lookup walks nested maps of a decoded values file.
func lookup(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func ptr[T any](v T) *T { return &v }
