package untrusted

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"short", 64, "short"},
		{"exactly", 7, "exactly"},
		{"abcdefgh", 4, "abcd…"},
		{"ab€cd", 3, "ab…"}, // € is 3 bytes: not split
		{"ab€cd", 5, "ab€…"},
		{"x", 0, "…"},
	}
	for _, tc := range tests {
		got := Clip(tc.s, tc.n)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
	if got := Clip(strings.Repeat("é", 100), 64); len(got) > 64+len("…") || !utf8.ValidString(got) {
		t.Errorf("Clip of a long multibyte string = %q", got)
	}
}

func TestPrintable(t *testing.T) {
	for s, want := range map[string]bool{
		"":                     true,
		"manual ban, día 2 €":  true,
		"a\nb":                 false,
		"tab\there":            false,
		"del\x7f":              false,
		"c1\u0085":             false,
		"bad utf8 \xff":        false,
		"<img src=x onerror=>": true, // markup is text; escaping is the writer's job
	} {
		if got := Printable(s); got != want {
			t.Errorf("Printable(%q) = %v, want %v", s, got, want)
		}
	}
}
