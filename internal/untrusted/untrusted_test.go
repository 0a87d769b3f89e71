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

func TestPlain(t *testing.T) {
	for s, want := range map[string]bool{
		"api-key-123":          true,
		"ключ €":               true,
		"203.0.113.7\u200b":    false, // zero-width space
		"abc\u202egnp.exe":     false, // right-to-left override
		"\ufeffbom":            false,
		"soft\u00adhyphen":     false,
		"iso\u2066late\u2069":  false,
		"a\nb":                 false, // and everything Printable refuses
		"<img src=x onerror=>": true,
	} {
		if got := Plain(s); got != want {
			t.Errorf("Plain(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestAllVisible(t *testing.T) {
	for s, want := range map[string]bool{
		"api-key 123":        true,
		"ключ €":             true,
		"":                   true,
		"203.0.113.7\u200b":  false,
		"nb\u00a0sp":         false,
		"hangul\u3164filler": false,
		"braille\u2800":      false,
		"line\u2028sep":      false,
		"cgj\u034f":          false,
		"wide\u3000space":    false,
		"tab\t":              false,
		"bad\xffutf8":        false,
	} {
		if got := AllVisible(s); got != want {
			t.Errorf("AllVisible(%q) = %v, want %v", s, got, want)
		}
		if got := Visible(s) == s; got != want {
			t.Errorf("Visible(%q) == itself is %v, want %v as AllVisible", s, got, want)
		}
	}
}

func TestVisible(t *testing.T) {
	for in, want := range map[string]string{
		"api-key 123":        "api-key 123",
		"ключ":               "ключ",
		"203.0.113.7\u200b":  `203.0.113.7\u{200B}`,
		"a\u202eb":           `a\u{202E}b`,
		"nb\u00a0sp":         `nb\u{00A0}sp`,
		"hangul\u3164filler": `hangul\u{3164}filler`,
		"tab\tnl\n":          `tab\u{0009}nl\u{000A}`,
		"bad\xffutf8":        `bad\x{FF}utf8`,
	} {
		if got := Visible(in); got != want {
			t.Errorf("Visible(%q) = %q, want %q", in, got, want)
		}
	}
	s := "plain-text-key"
	if n := testing.AllocsPerRun(100, func() { _ = Visible(s) }); n != 0 {
		t.Errorf("Visible of plain text allocates %v times, want 0", n)
	}
}
