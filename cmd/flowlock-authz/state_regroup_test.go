package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/flowlock/flowlock/internal/quarantine"
)

// TestLogRegrouped: one line, counts and prefixes only, a warning only when
// ranges were kept, and silence when nothing moved.
func TestLogRegrouped(t *testing.T) {
	tests := []struct {
		name      string
		g         quarantine.Regrouped
		wantLevel string // "" means no line
		want      map[string]any
	}{
		{"nothing moved", quarantine.Regrouped{Prefix: 64}, "", nil},
		{"coarser", quarantine.Regrouped{Prefix: 56, From: []int{64}, Coarsened: 3, Merged: 1}, "INFO",
			map[string]any{"ipv6_prefix": "/56", "from_prefixes": "/64", "regrouped": 3.0, "merged": 1.0, "kept_as_ranges": 0.0}},
		{"finer", quarantine.Regrouped{Prefix: 128, From: []int{48, 64}, Ranges: 2}, "WARN",
			map[string]any{"ipv6_prefix": "/128", "from_prefixes": "/48,/64", "regrouped": 0.0, "kept_as_ranges": 2.0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			logRegrouped(slog.New(slog.NewJSONHandler(&buf, nil)), tc.g)
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if tc.wantLevel == "" {
				if buf.Len() != 0 {
					t.Errorf("logged %q, want nothing", buf.String())
				}
				return
			}
			if len(lines) != 1 {
				t.Fatalf("logged %d lines, want 1:\n%s", len(lines), buf.String())
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
				t.Fatal(err)
			}
			if rec["level"] != tc.wantLevel || !strings.Contains(rec["msg"].(string), "--ipv6-prefix") {
				t.Errorf("record = %v, want level %s and a message naming --ipv6-prefix", rec, tc.wantLevel)
			}
			for k, v := range tc.want {
				if rec[k] != v {
					t.Errorf("%s = %v (%T), want %v", k, rec[k], rec[k], v)
				}
			}
		})
	}
}
