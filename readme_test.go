package flowlock_test

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/flowlock/flowlock/internal/config"
)

var update = flag.Bool("update", false, "rewrite generated sections of README.md")

const (
	tableStart = "<!-- config-table:start (generated from internal/config; a test keeps it in sync) -->\n"
	tableEnd   = "<!-- config-table:end -->"
)

// configTable renders config.Reference() as the README's markdown table.
func configTable() string {
	var b strings.Builder
	b.WriteString("| flag | environment | default | meaning |\n|---|---|---|---|\n")
	for _, s := range config.Reference() {
		def := "—"
		if s.Default != "" {
			def = "`" + s.Default + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s |\n", s.Flag, s.Env, def, strings.ReplaceAll(s.Help, "|", `\|`))
	}
	return b.String()
}

// TestReadmeConfigTable fails when README.md's configuration table differs
// from the settings the binary really has. Run with -update to fix.
func TestReadmeConfigTable(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i, j := strings.Index(readme, tableStart), strings.Index(readme, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the config-table markers")
	}
	want := readme[:i+len(tableStart)] + configTable() + readme[j:]
	if readme == want {
		return
	}
	if *update {
		if err := os.WriteFile("README.md", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's configuration table is out of date: run go test -run TestReadmeConfigTable -update .")
}
