// Package untrusted holds the checks every package applies to text
// that came from the wire or from a file: Clip, to echo it in an error
// message without letting it grow the message, and Printable, to keep it
// from breaking log lines and state files. It imports nothing of Flow
// Lock's, so any package may use it.
package untrusted

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Clip returns s cut to at most n bytes, at a character boundary, with "…"
// appended when it was cut.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:max(n, 0)], "") + "…"
}

// Printable reports whether s is valid UTF-8 without control characters
// (C0, DEL, C1).
func Printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// Plain reports whether s is Printable and also free of Unicode format
// characters (category Cf): zero-width spaces and joiners (U+200B–U+200D),
// the byte-order mark, soft hyphens and the bidirectional controls
// (U+202A–U+202E, U+2066–U+2069). They print as nothing, so "203.0.113.7"
// followed by U+200B looks like an address it is not, and U+202E turns the
// rest of a line around on screen. Text an operator reads and acts on
// (identities, reasons) must be Plain.
func Plain(s string) bool {
	if !Printable(s) {
		return false
	}
	for _, r := range s {
		if unicode.Is(unicode.Cf, r) {
			return false
		}
	}
	return true
}

// Visible returns s with every character that a reader cannot see or tell
// from a space written as \u{XXXX}: control and format characters,
// separators other than the ASCII space (no-break and other wide spaces,
// line and paragraph separators), and invalid UTF-8 bytes (as \x{XX}).
// Plain text of graphic characters comes back unchanged, without
// allocating. It is for showing text as it is, never for storing it.
func Visible(s string) string {
	if AllVisible(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, "\\x{%02X}", s[i])
		case !visibleRune(r):
			fmt.Fprintf(&b, "\\u{%04X}", r)
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

// AllVisible reports whether Visible(s) is s: valid UTF-8 of graphic
// characters and ASCII spaces only, every one of them showing as itself.
// It is stricter than Plain, which lets no-break and other wide spaces,
// line separators and blank-looking letters (U+3164 and the other Hangul
// fillers, the braille blank) through.
func AllVisible(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size <= 1) || !visibleRune(r) {
			return false
		}
		i += size
	}
	return true
}

// visibleRune reports whether r shows as itself: a graphic character that
// is not a separator, or the ASCII space.
func visibleRune(r rune) bool {
	if r == ' ' {
		return true
	}
	return unicode.IsGraphic(r) && !unicode.Is(unicode.Z, r) && !unicode.Is(unicode.Cf, r) &&
		!invisibleFiller(r)
}

// invisibleFiller reports the letters and symbols that Unicode marks
// Default_Ignorable or that render blank although they are not format
// characters: the Hangul fillers, the braille blank and the combining
// grapheme joiner.
func invisibleFiller(r rune) bool {
	switch r {
	case 0x034F, 0x115F, 0x1160, 0x2800, 0x3164, 0xFFA0:
		return true
	}
	return false
}
