package config

import (
	"strings"
	"time"
)

// The values of --identity.
const (
	IdentityAddress            = "address"
	IdentityFingerprint        = "fingerprint"
	IdentityAddressFingerprint = "address+fingerprint"
)

// Bounds of the identity sources.
const (
	maxClaimSegments   = 8
	maxClaimSegmentLen = 64
	// maxPayloadKeyLen admits an issuer URL as the payload key: Envoy
	// Gateway and older Istio key the verified payload by issuer, and an
	// Entra ID v2 issuer is 75 characters.
	maxPayloadKeyLen     = 256
	maxFingerprintFlag   = 50
	minFingerprintWindow = time.Minute
	maxFingerprintWindow = 24 * time.Hour
	maxFingerprintCalm   = 200
)

// ClaimPath returns where --identity-jwt-claim sits in the jwt_authn
// namespace: the payload_in_metadata key, then the claim split at its
// dots. nil without a claim.
func (c Config) ClaimPath() []string {
	if c.IdentityJWTClaim == "" {
		return nil
	}
	return append([]string{c.IdentityJWTPayloadKey}, strings.Split(c.IdentityJWTClaim, ".")...)
}

// checkIdentitySources validates the JWT claim, the fingerprint header and
// what the identity is composed of.
func checkIdentitySources(c Config, bad func(flag, format string, args ...any)) {
	if c.IdentityJWTClaim != "" {
		segs := strings.Split(c.IdentityJWTClaim, ".")
		switch {
		case len(segs) > maxClaimSegments:
			bad("identity-jwt-claim", "%d dotted parts, at most %d", len(segs), maxClaimSegments)
		default:
			for _, s := range segs {
				if s == "" || len(s) > maxClaimSegmentLen || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
					bad("identity-jwt-claim", "%q: each dotted part must be 1-%d characters without spaces, like sub or act.sub", c.IdentityJWTClaim, maxClaimSegmentLen)
					break
				}
			}
		}
		if k := c.IdentityJWTPayloadKey; k == "" || len(k) > maxPayloadKeyLen || strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			bad("identity-jwt-payload-key", "must be the payload_in_metadata key of your jwt_authn providers (1-%d characters, no spaces), got %q", maxPayloadKeyLen, k)
		}
	}
	if err := checkIdentityHeader(c.FingerprintHeader); err != nil {
		bad("fingerprint-header", "%v", err)
	} else if c.FingerprintHeader != "" && c.FingerprintHeader == c.IdentityHeader {
		bad("fingerprint-header", "%q is also --identity-header; a fingerprint names a TLS stack, not a client", c.FingerprintHeader)
	}
	switch c.Identity {
	case IdentityAddress:
	case IdentityFingerprint, IdentityAddressFingerprint:
		if c.FingerprintHeader == "" {
			bad("identity", "%s needs --fingerprint-header, the header in which the proxy passes the TLS fingerprint", c.Identity)
		}
	default:
		bad("identity", "must be %s, %s or %s, got %q", IdentityAddress, IdentityFingerprint, IdentityAddressFingerprint, c.Identity)
	}
	if c.FingerprintFlagAfter < 0 || c.FingerprintFlagAfter > maxFingerprintFlag {
		bad("fingerprint-flag-after", "must be 0-%d, got %d", maxFingerprintFlag, c.FingerprintFlagAfter)
	}
	if c.FingerprintWindow < minFingerprintWindow || c.FingerprintWindow > maxFingerprintWindow {
		bad("fingerprint-window", "must be %v-%v, got %v", minFingerprintWindow, maxFingerprintWindow, c.FingerprintWindow)
	}
	if c.FingerprintCalmLimit < 1 || c.FingerprintCalmLimit > maxFingerprintCalm {
		bad("fingerprint-calm-limit", "must be 1-%d, got %d", maxFingerprintCalm, c.FingerprintCalmLimit)
	}
}
