package redisstore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/redisstore/redistest"
)

// writeCA writes a CA and a server certificate for 127.0.0.1 signed by it
// into dir, and returns the three PEM file names.
func writeCA(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	caKey, srvKey := key(), key()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flowlock test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("redis.pem", "CERTIFICATE", srvDER), write("redis.key", "PRIVATE KEY", keyDER)
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCA(t, dir)
	otherCA, _, _ := writeCA(t, t.TempDir())
	tlsPort := redistest.FreePort(t, false)
	srv := redistest.Start(t, redistest.Args("--tls-port", strconv.Itoa(tlsPort), "--tls-cert-file", certFile,
		"--tls-key-file", keyFile, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "no"))
	tlsAddr := "127.0.0.1:" + strconv.Itoa(tlsPort)

	s := open(t, Options{Addrs: []string{tlsAddr}, TLS: true, CAFile: caFile})
	if _, err := s.Merge(ctxT(t), []Observation{{ID: "x", Times: []int64{us(0, 0)}}}); err != nil {
		t.Fatalf("Merge over TLS: %v", err)
	}

	tests := []struct {
		name    string
		o       Options
		want    error
		setting string
	}{
		{"another CA", Options{Addrs: []string{tlsAddr}, TLS: true, CAFile: otherCA}, ErrTLS, "--redis-ca-file"},
		{"TLS to a plain port", Options{Addrs: []string{srv.Addr}, TLS: true, CAFile: caFile, DialTimeout: 300 * time.Millisecond}, nil, "unset --redis-tls"},
		{"plain to a TLS port", Options{Addrs: []string{tlsAddr}}, nil, "set --redis-tls"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(ctxT(t), tc.o)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Open: %v, want errors.Is %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.setting) {
				t.Errorf("Open: %q does not name %s", err, tc.setting)
			}
		})
	}
}
