package helmtest

import (
	"bytes"
	"errors"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const (
	// chartDir is the chart under test, relative to this package.
	chartDir = "../helm/tcpstate-exporter"
	// repoRoot is the repository root, relative to this package.
	repoRoot = "../.."
	// releaseName and releaseNamespace are used for every render.
	releaseName      = "tcpx"
	releaseNamespace = "observability"
)

// helmBinary returns the path of the helm binary: from PATH, else from
// $GOPATH/bin (where `go install helm.sh/helm/v3/cmd/helm` puts it). The
// test is skipped when neither has one.
func helmBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	var tried []string
	for _, gopath := range filepath.SplitList(build.Default.GOPATH) {
		p := filepath.Join(gopath, "bin", "helm")
		tried = append(tried, p)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Skipf("helm is not installed: not on PATH and not at %s (install with `go install helm.sh/helm/v3/cmd/helm@v3.22.0`)", strings.Join(tried, ", "))
	return ""
}

// runHelm runs helm with args and an isolated cache/config/data home, and
// returns its standard output, and an error holding standard error when it
// exits non-zero.
func runHelm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin := helmBinary(t)
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

// templateArgs builds the `helm template` command line for the chart with
// the given values files and extra flags.
func templateArgs(valuesFiles []string, extra ...string) []string {
	args := []string{"template", releaseName, chartDir, "--namespace", releaseNamespace}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	return append(args, extra...)
}

// rendered holds the objects of one render, each decoded strictly into its
// Go type.
type rendered struct {
	DaemonSets          []appsv1.DaemonSet
	Services            []corev1.Service
	ServiceAccounts     []corev1.ServiceAccount
	ConfigMaps          []corev1.ConfigMap
	Secrets             []corev1.Secret
	ClusterRoles        []rbacv1.ClusterRole
	ClusterRoleBindings []rbacv1.ClusterRoleBinding
	ServiceMonitors     []monitoringv1.ServiceMonitor
	PodMonitors         []monitoringv1.PodMonitor
	PrometheusRules     []monitoringv1.PrometheusRule

	// Generic holds every object decoded into plain maps, keyed by
	// "Kind/name", for comparisons that must not go through a Go type.
	Generic map[string]map[string]any
}

// render runs `helm template` and decodes its output, failing the test on
// any error.
func render(t *testing.T, valuesFiles []string, extra ...string) *rendered {
	t.Helper()
	out, err := runHelm(t, templateArgs(valuesFiles, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeManifests(out)
	if err != nil {
		t.Fatalf("decoding the rendered chart: %v", err)
	}
	return r
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocuments splits a multi-document YAML stream and drops documents
// holding only comments or blank lines.
func splitDocuments(stream []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSeparator.Split(string(stream), -1) {
		empty := true
		for _, line := range strings.Split(d, "\n") {
			l := strings.TrimSpace(line)
			if l != "" && !strings.HasPrefix(l, "#") {
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

// decodeStrict decodes one YAML document into out, failing on unknown or
// duplicate fields.
func decodeStrict(doc []byte, out any) error {
	if err := yaml.UnmarshalStrict(doc, out); err != nil {
		return fmt.Errorf("strict decode into %T: %w", out, err)
	}
	return nil
}

// decodeManifests decodes every document of a rendered chart into its Go
// type, by apiVersion and kind. A kind the chart is not expected to render
// is an error.
func decodeManifests(stream []byte) (*rendered, error) {
	r := &rendered{Generic: map[string]map[string]any{}}
	docs := splitDocuments(stream)
	if len(docs) == 0 {
		return nil, errors.New("the render holds no object")
	}
	for i, doc := range docs {
		var tm struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("document %d is not YAML: %w\n%s", i, err, doc)
		}
		var generic map[string]any
		if err := yaml.Unmarshal(doc, &generic); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		key := tm.Kind + "/" + tm.Metadata.Name
		if _, dup := r.Generic[key]; dup {
			return nil, fmt.Errorf("document %d: %s rendered twice", i, key)
		}
		r.Generic[key] = generic

		var err error
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 DaemonSet":
			err = decodeInto(doc, &r.DaemonSets)
		case "v1 Service":
			err = decodeInto(doc, &r.Services)
		case "v1 ServiceAccount":
			err = decodeInto(doc, &r.ServiceAccounts)
		case "v1 ConfigMap":
			err = decodeInto(doc, &r.ConfigMaps)
		case "v1 Secret":
			err = decodeInto(doc, &r.Secrets)
		case "rbac.authorization.k8s.io/v1 ClusterRole":
			err = decodeInto(doc, &r.ClusterRoles)
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
			err = decodeInto(doc, &r.ClusterRoleBindings)
		case "monitoring.coreos.com/v1 ServiceMonitor":
			err = decodeInto(doc, &r.ServiceMonitors)
		case "monitoring.coreos.com/v1 PodMonitor":
			err = decodeInto(doc, &r.PodMonitors)
		case "monitoring.coreos.com/v1 PrometheusRule":
			err = decodeInto(doc, &r.PrometheusRules)
		default:
			err = fmt.Errorf("unexpected object %q %q", tm.APIVersion, tm.Kind)
		}
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %w\n%s", i, key, err, doc)
		}
	}
	return r, nil
}

// decodeInto strictly decodes doc into a new T and appends it to list.
func decodeInto[T any](doc []byte, list *[]T) error {
	var obj T
	if err := decodeStrict(doc, &obj); err != nil {
		return err
	}
	*list = append(*list, obj)
	return nil
}

// ciValuesFiles lists the chart's ci/*-values.yaml files.
func ciValuesFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no ci/*-values.yaml in %s", chartDir)
	}
	return files
}

// readValues decodes a values file into plain maps.
func readValues(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]any{}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if v == nil {
		v = map[string]any{}
	}
	return v
}

func TestSplitDocuments(t *testing.T) {
	stream := "---\n# Source: a.yaml\nkind: A\n---\n# only a comment\n\n---\nkind: B\nx: |\n  ---not a separator\n"
	docs := splitDocuments([]byte(stream))
	if len(docs) != 2 {
		t.Fatalf("got %d documents, want 2: %q", len(docs), docs)
	}
	if !strings.Contains(string(docs[0]), "kind: A") || !strings.Contains(string(docs[1]), "kind: B") {
		t.Errorf("documents split wrongly: %q", docs)
	}
}

func TestDecodeManifestsIsStrict(t *testing.T) {
	// A field the Service type does not have must be rejected, not dropped.
	doc := "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports:\n    - port: 1\n      portName: typo\n"
	if _, err := decodeManifests([]byte(doc)); err == nil || !strings.Contains(err.Error(), "portName") {
		t.Errorf("unknown field accepted, err = %v", err)
	}
	// So must a field on a prometheus-operator type.
	doc = "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: x\nspec:\n  selector: {}\n  endpoints:\n    - port: http\n      honorLabel: true\n"
	if _, err := decodeManifests([]byte(doc)); err == nil || !strings.Contains(err.Error(), "honorLabel") {
		t.Errorf("unknown field accepted, err = %v", err)
	}
	// And a kind the chart should never render.
	doc = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n"
	if _, err := decodeManifests([]byte(doc)); err == nil {
		t.Error("unexpected kind accepted")
	}
}
