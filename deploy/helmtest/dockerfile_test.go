package helmtest

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines
// joined.
type instruction struct {
	Line int    // line the instruction starts on
	Cmd  string // upper-cased keyword
	Args string
}

// stage is one FROM and the instructions under it.
type stage struct {
	Image, Name string
	Body        []instruction
}

// parseDockerfile splits a Dockerfile into stages. It understands comments,
// parser directives, blank lines and backslash continuations, which is all
// the project's Dockerfile uses.
func parseDockerfile(text string) ([]stage, error) {
	var (
		stages []stage
		cur    strings.Builder
		start  int
	)
	flush := func() error {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(s, " ")
		in := instruction{Line: start, Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			var st stage
			for _, w := range f {
				if strings.HasPrefix(w, "--") {
					continue
				}
				if st.Image == "" {
					st.Image = w
				}
			}
			if n := len(f); n >= 3 && strings.EqualFold(f[n-2], "AS") {
				st.Name = f[n-1]
			}
			if st.Image == "" {
				return fmt.Errorf("line %d: FROM without an image", start)
			}
			stages = append(stages, st)
			return nil
		}
		if len(stages) == 0 {
			if in.Cmd == "ARG" {
				return nil // global build argument
			}
			return fmt.Errorf("line %d: %s before the first FROM", start, in.Cmd)
		}
		stages[len(stages)-1].Body = append(stages[len(stages)-1].Body, in)
		return nil
	}
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // comment, parser directive, or comment inside a continuation
		}
		if trimmed == "" {
			continue // blank lines end nothing, not even a continuation
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if cur.Len() != 0 {
		return nil, fmt.Errorf("line %d: unterminated continuation", start)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return stages, nil
}

func TestParseDockerfile(t *testing.T) {
	stages, err := parseDockerfile("# syntax=docker/dockerfile:1\nARG X\nFROM a:1 AS b\nRUN one \\\n  # note\n  two\nFROM --platform=linux/amd64 c\nUSER 1:1\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) != 2 || stages[0].Image != "a:1" || stages[0].Name != "b" || stages[1].Image != "c" {
		t.Fatalf("stages %+v", stages)
	}
	if b := stages[0].Body; len(b) != 1 || b[0].Cmd != "RUN" || strings.Join(strings.Fields(b[0].Args), " ") != "one two" || b[0].Line != 4 {
		t.Errorf("continuation parsed as %+v", b)
	}
	if _, err := parseDockerfile("RUN x\n"); err == nil {
		t.Error("instruction before FROM accepted")
	}
	if _, err := parseDockerfile("FROM a\nRUN x \\\n"); err == nil {
		t.Error("unterminated continuation accepted")
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages, err := parseDockerfile(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a builder and a final stage", len(stages))
	}
	builder, final := stages[0], stages[len(stages)-1]

	if !strings.HasPrefix(builder.Image, "golang:1.26") || builder.Name == "" {
		t.Errorf("builder stage FROM %s AS %q, want golang:1.26 with a name", builder.Image, builder.Name)
	}
	if !strings.HasPrefix(final.Image, "gcr.io/distroless/static") && final.Image != "scratch" {
		t.Errorf("final stage FROM %s, want distroless static or scratch (no libc)", final.Image)
	}

	// The build: static (cgo off), trimmed paths, the exporter's main package.
	var build *instruction
	cgoOffByEnv := false
	for i, in := range builder.Body {
		if in.Cmd == "ENV" && regexp.MustCompile(`\bCGO_ENABLED=0\b`).MatchString(in.Args) {
			cgoOffByEnv = true
		}
		if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
			build = &builder.Body[i]
		}
	}
	if build == nil {
		t.Fatal("builder stage has no RUN go build")
	}
	if !cgoOffByEnv && !regexp.MustCompile(`\bCGO_ENABLED=0\b`).MatchString(build.Args) {
		t.Errorf("line %d: go build without CGO_ENABLED=0: the binary would need libc", build.Line)
	}
	if regexp.MustCompile(`\bCGO_ENABLED=1\b`).MatchString(build.Args) {
		t.Errorf("line %d: go build turns cgo on", build.Line)
	}
	for _, want := range []string{"-trimpath", "-s -w", "./cmd/tcpstate-exporter",
		// Version and revision stamped as --version and tcpstate_build_info
		// report them: the version from the VERSION file, the revision
		// from the REVISION build argument (the context has no .git).
		`"$(cat VERSION)"`, "-X github.com/prometheus/common/version.Version=${version}",
		"-X github.com/prometheus/common/version.Revision=${REVISION}"} {
		if !strings.Contains(build.Args, want) {
			t.Errorf("line %d: go build lacks %q", build.Line, want)
		}
	}
	if st, err := os.Stat(filepath.Join(repoRoot, "cmd", "tcpstate-exporter")); err != nil || !st.IsDir() {
		t.Errorf("./cmd/tcpstate-exporter is not a directory: %v", err)
	}
	out := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(build.Args)
	if out == nil {
		t.Fatalf("line %d: go build has no -o", build.Line)
	}

	// The final stage: the built binary, a non-root user, the port, an
	// exec-form entrypoint running the binary.
	var user, entry, copied string
	var exposed []string
	for _, in := range final.Body {
		switch in.Cmd {
		case "USER":
			user = in.Args
		case "ENTRYPOINT":
			entry = in.Args
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.Args)...)
		case "COPY":
			f := strings.Fields(in.Args)
			if len(f) == 3 && f[0] == "--from="+builder.Name && f[1] == out[1] {
				copied = f[2]
			}
		case "RUN":
			t.Errorf("line %d: RUN in the final stage (no shell there)", in.Line)
		}
	}
	if copied == "" {
		t.Errorf("final stage does not COPY --from=%s %s", builder.Name, out[1])
	}
	if !nonRootUser(user) {
		t.Errorf("final USER %q: want a numeric non-root uid:gid", user)
	}
	if !slices.Contains(exposed, "9874") && !slices.Contains(exposed, "9874/tcp") {
		t.Errorf("EXPOSE %q, want 9874", exposed)
	}
	var argv []string
	if err := json.Unmarshal([]byte(entry), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("ENTRYPOINT %q is not exec form: %v", entry, err)
	}
	if argv[0] != copied && path.Join(copied, path.Base(out[1])) != argv[0] {
		t.Errorf("ENTRYPOINT runs %q, binary copied to %q", argv[0], copied)
	}
}

// nonRootUser reports whether a USER value is numeric uid[:gid] with
// neither being 0: a numeric uid lets Kubernetes check runAsNonRoot.
func nonRootUser(u string) bool {
	if u == "" {
		return false
	}
	for _, part := range strings.Split(u, ":") {
		n, err := strconv.Atoi(part)
		if err != nil || n <= 0 {
			return false
		}
	}
	return true
}

func TestNonRootUser(t *testing.T) {
	for u, want := range map[string]bool{"65534:65534": true, "65534": true, "0": false, "root": false, "": false, "65534:0": false, "nobody": false} {
		if got := nonRootUser(u); got != want {
			t.Errorf("nonRootUser(%q) = %v, want %v", u, got, want)
		}
	}
}

func TestDockerignoreKeepsSources(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf("negated pattern %q: this check does not model them", line)
		}
		patterns = append(patterns, strings.TrimSuffix(strings.TrimPrefix(line, "/"), "/"))
	}
	ignored := func(p string) bool {
		for _, pat := range patterns {
			// Docker matches a pattern against the path and its parents;
			// "**/" matches any number of leading directories.
			for cand := p; cand != "." && cand != "/"; cand = path.Dir(cand) {
				if ok, _ := path.Match(pat, cand); ok {
					return true
				}
				if rest, found := strings.CutPrefix(pat, "**/"); found {
					for sub := cand; ; {
						if ok, _ := path.Match(rest, sub); ok {
							return true
						}
						i := strings.Index(sub, "/")
						if i < 0 {
							break
						}
						sub = sub[i+1:]
					}
				}
			}
		}
		return false
	}
	for _, keep := range []string{"go.mod", "go.sum", "cmd/tcpstate-exporter/main.go", "collector/collector.go", "diag/dump.go", "VERSION", "version.go"} {
		if ignored(keep) {
			t.Errorf(".dockerignore excludes %s, which the build needs", keep)
		}
	}
	for _, drop := range []string{".git/HEAD", "deploy/helm/tcpstate-exporter/Chart.yaml", "diag/testdata/dump.bin", "collector/collector_test.go"} {
		if !ignored(drop) {
			t.Errorf(".dockerignore sends %s to the build context", drop)
		}
	}
}
