// Package untrusted holds the two checks every package applies to text
// that came from the wire or from a file: Clip, to echo it in an error
// message without letting it grow the message, and Printable, to keep it
// from breaking log lines and state files. It imports nothing of Flow
// Lock's, so any package may use it.
package untrusted

import (
	"strings"
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
