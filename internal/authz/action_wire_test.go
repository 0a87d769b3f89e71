package authz

import "testing"

// TestHoneypotAnswerWireSize pins the README's "one header longer on the
// wire (65 bytes instead of 31)": at a two-digit score the encoded
// honeypot answer is 65 bytes and the allow 31, and at every score the
// honeypot's route header adds the same 34 bytes.
func TestHoneypotAnswerWireSize(t *testing.T) {
	if a, h := allowByScore[50].wire.Len(), honeypotByScore[50].wire.Len(); a != 31 || h != 65 {
		t.Errorf("score 50: allow %d bytes, honeypot %d, want 31 and 65 (README, Timing)", a, h)
	}
	for s := range honeypotByScore {
		if d := honeypotByScore[s].wire.Len() - allowByScore[s].wire.Len(); d != 34 {
			t.Errorf("score %d: the honeypot answer is %d bytes longer than the allow, want 34", s, d)
		}
	}
}
