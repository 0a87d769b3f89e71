package main

import (
	"testing"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/risk"
)

// TestVocabularyNamesEveryValue: each domain value gets its own label, so a
// new outcome, fallback or detector is counted under its name, never under
// another's or "_other".
func TestVocabularyNamesEveryValue(t *testing.T) {
	v := vocabulary()
	for _, tc := range []struct {
		what  string
		names []string
		want  int
	}{
		{"check reasons", v.CheckReasons, len(authz.Outcomes())},
		{"fallbacks", v.Fallbacks, len(authz.Fallbacks())},
		{"admissions", v.Admissions, len(risk.Reasons()) + 1},
	} {
		if len(tc.names) != tc.want {
			t.Errorf("%s: %d labels for %d values", tc.what, len(tc.names), tc.want)
		}
		seen := map[string]bool{}
		for i, n := range tc.names {
			if n == "" && !(tc.what == "fallbacks" && authz.Fallback(i) == authz.FallbackNone) {
				t.Errorf("%s: value %d has no label", tc.what, i)
			}
			if seen[n] {
				t.Errorf("%s: label %q twice", tc.what, n)
			}
			seen[n] = true
		}
	}
	if v.Admissions[admissionManual] != "manual" {
		t.Errorf("admissionManual = %q", v.Admissions[admissionManual])
	}
}
