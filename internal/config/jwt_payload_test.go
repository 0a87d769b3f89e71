package config

import "testing"

// TestPayloadKeyFitsAnIssuerURL: Envoy Gateway (and Istio before "payload")
// writes the verified payload under the issuer URL; an Entra ID v2 issuer
// is 75 characters, more than a claim segment's 64: the payload key takes
// up to 256.
func TestPayloadKeyFitsAnIssuerURL(t *testing.T) {
	issuer := "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"
	if _, err := Load([]string{"--identity-jwt-claim", "oid", "--identity-jwt-payload-key", issuer}, func(string) string { return "" }); err != nil {
		t.Errorf("an Entra ID issuer as payload key (%d chars) is refused: %v", len(issuer), err)
	}
}
