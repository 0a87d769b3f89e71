package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadme keeps deploy/README.md pointing at the tested files rather
// than at copies: every relative link resolves, and the Envoy image it tells
// people to validate with is the one docker-compose.yml runs.
func TestReadme(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)

	links := regexp.MustCompile(`\]\(([^)#]+)(#[^)]*)?\)`).FindAllStringSubmatch(readme, -1)
	if len(links) == 0 {
		t.Fatal("no links found")
	}
	for _, l := range links {
		target := l[1]
		if strings.Contains(target, "://") {
			continue
		}
		if _, err := os.Stat(filepath.FromSlash(target)); err != nil {
			t.Errorf("README links to %s: %v", target, err)
		}
	}

	p, err := loadCompose(t, composeFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	envoy, err := p.GetService("envoy")
	if err != nil {
		t.Fatal(err)
	}
	images := regexp.MustCompile(`envoyproxy/envoy:v[0-9.]+`).FindAllString(readme, -1)
	if len(images) == 0 {
		t.Error("README does not name the Envoy image")
	}
	for _, img := range images {
		if img != envoy.Image {
			t.Errorf("README names %s, docker-compose.yml runs %s", img, envoy.Image)
		}
	}
	if v := envoyProtoVersion(t); !strings.Contains(readme, "go-control-plane `envoy` "+v) {
		t.Errorf("README does not say which Envoy API protos (go-control-plane `envoy` %s) the checks use", v)
	}
}

// envoyProtoVersion returns the go-control-plane envoy module version that
// go.mod requires: the Envoy API the checks validate against.
func envoyProtoVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/envoyproxy/go-control-plane/envoy (v\S+)`).FindStringSubmatch(string(data))
	if m == nil {
		t.Fatal("go.mod does not require github.com/envoyproxy/go-control-plane/envoy")
	}
	return m[1]
}
