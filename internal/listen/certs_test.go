package listen

import (
	"crypto/tls"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// pki is a server CA with a server certificate, and a client CA, written to
// files in a temporary directory.
type pki struct {
	dir                   string
	serverCA, clientCA    *flowlocktest.CA
	certFile, keyFile, ca string
	server                flowlocktest.Leaf
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), serverCA: flowlocktest.NewCA(t, "server CA"), clientCA: flowlocktest.NewCA(t, "client CA")}
	p.server = p.serverCA.Server(t, "flowlock")
	p.certFile, p.keyFile = p.server.WriteFiles(t, p.dir, "server")
	p.ca = p.clientCA.WriteFile(t, p.dir, "client-ca")
	return p
}

// serveTLS serves TLS on a Listener with opts: each connection is
// handshaken, answered with "ok" and closed.
func serveTLS(t *testing.T, certs *Certs, opts Options) *Listener {
	t.Helper()
	opts.TLS = true
	l := listenLimited(t, opts)
	tl := tls.NewListener(l, certs.ServerConfig())
	t.Cleanup(func() { tl.Close() })
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = io.WriteString(c, "ok")
					_, _ = io.Copy(io.Discard, c)
				}
			}()
		}
	}()
	return l
}

// handshake connects to l with client and returns the server certificate's
// serial, or the error of the handshake or of reading the server's "ok"
// (TLS 1.3 reports a refused client certificate only on that read).
func handshake(t *testing.T, l net.Listener, p *pki, client *tls.Certificate) (*big.Int, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: p.serverCA.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	certs, err := LoadCerts(CertOptions{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.ca})
	if err != nil {
		t.Fatal(err)
	}
	l := serveTLS(t, certs, Options{})
	good := p.clientCA.Client(t, "envoy", time.Time{}, time.Time{})
	wrongCA := flowlocktest.NewCA(t, "another CA").Client(t, "envoy", time.Time{}, time.Time{})
	expired := p.clientCA.Client(t, "envoy", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	notYet := p.clientCA.Client(t, "envoy", time.Now().Add(time.Hour), time.Now().Add(48*time.Hour))
	// A server certificate from the right CA is no client certificate.
	serverAsClient := p.clientCA.Server(t, "not a client")

	if _, err := handshake(t, l, p, &good.TLS); err != nil {
		t.Errorf("a client certificate from the client CA was refused: %v", err)
	}
	for name, c := range map[string]*tls.Certificate{
		"no certificate":                 nil,
		"certificate from another CA":    &wrongCA.TLS,
		"expired certificate":            &expired.TLS,
		"certificate not yet valid":      &notYet.TLS,
		"certificate without clientAuth": &serverAsClient.TLS,
	} {
		if _, err := handshake(t, l, p, c); err == nil {
			t.Errorf("%s: accepted, want the handshake refused", name)
		}
	}
}

func TestTLSWithoutClientCA(t *testing.T) {
	p := newPKI(t)
	certs, err := LoadCerts(CertOptions{CertFile: p.certFile, KeyFile: p.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	l := serveTLS(t, certs, Options{})
	if _, err := handshake(t, l, p, nil); err != nil {
		t.Errorf("without --client-ca a client without a certificate was refused: %v", err)
	}
}

func TestCertificateRotation(t *testing.T) {
	p := newPKI(t)
	certs, err := LoadCerts(CertOptions{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.ca, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l := serveTLS(t, certs, Options{})
	client := p.clientCA.Client(t, "envoy", time.Time{}, time.Time{})
	serialNow := func() *big.Int {
		t.Helper()
		s, err := handshake(t, l, p, &client.TLS)
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return s
	}
	if got := serialNow(); got.Cmp(p.server.Serial) != 0 {
		t.Fatalf("serial %v, want the first certificate's %v", got, p.server.Serial)
	}

	// Half a rotation: the new certificate with the old key does not load;
	// the old pair stays in use.
	next := p.serverCA.Server(t, "flowlock")
	if err := os.WriteFile(p.certFile, next.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := serialNow(); got.Cmp(p.server.Serial) != 0 {
		t.Fatalf("after writing only the certificate: serial %v, want the old %v still", got, p.server.Serial)
	}
	// The whole rotation is picked up without a restart.
	next.WriteFiles(t, p.dir, "server")
	time.Sleep(50 * time.Millisecond)
	if got := serialNow(); got.Cmp(next.Serial) != 0 {
		t.Fatalf("after the rotation: serial %v, want the new %v", got, next.Serial)
	}

	// A rotated client CA: clients of the old one are refused, of the new
	// one accepted.
	newClientCA := flowlocktest.NewCA(t, "client CA 2")
	newClientCA.WriteFile(t, p.dir, "client-ca")
	time.Sleep(50 * time.Millisecond)
	if _, err := handshake(t, l, p, &client.TLS); err == nil {
		t.Error("a client of the replaced CA was accepted")
	}
	c2 := newClientCA.Client(t, "envoy", time.Time{}, time.Time{})
	if _, err := handshake(t, l, p, &c2.TLS); err != nil {
		t.Errorf("a client of the new CA was refused: %v", err)
	}
}

func TestLoadCertsErrorsNameTheFile(t *testing.T) {
	p := newPKI(t)
	other := p.serverCA.Server(t, "other")
	_, otherKey := other.WriteFiles(t, p.dir, "other")
	junk := filepath.Join(p.dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts CertOptions
		want string
	}{
		{"missing certificate", CertOptions{CertFile: filepath.Join(p.dir, "nope.crt"), KeyFile: p.keyFile}, "nope.crt"},
		{"key of another certificate", CertOptions{CertFile: p.certFile, KeyFile: otherKey}, "other.key"},
		{"CA file without a certificate", CertOptions{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: junk}, "junk.pem"},
		{"a directory", CertOptions{CertFile: p.dir, KeyFile: p.keyFile}, "not a regular file"},
		{"a device", CertOptions{CertFile: "/dev/zero", KeyFile: p.keyFile}, "/dev/zero"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadCerts(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadCerts error = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// TestTLSHandshakeEstablishes shows that under a cap a connection that
// completed its TLS handshake is kept, and one that only connected is
// closed to make room.
func TestTLSHandshakeEstablishes(t *testing.T) {
	p := newPKI(t)
	certs, err := LoadCerts(CertOptions{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.ca})
	if err != nil {
		t.Fatal(err)
	}
	l := serveTLS(t, certs, Options{MaxConns: 2})
	client := p.clientCA.Client(t, "envoy", time.Time{}, time.Time{})
	cfg := &tls.Config{RootCAs: p.serverCA.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{client.TLS}}
	good, err := tls.Dial("tcp", l.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if _, err := io.ReadFull(good, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	// Bytes are not a handshake: on a TLS listener only a completed
	// handshake establishes a connection, so one that has sent nothing
	// yet (or half a ClientHello) is the one closed to make room.
	silent := dial(t, l, "")
	waitFor(t, func() bool { return l.Stats().Open == 2 })
	dial(t, l, "")
	if !closedByServer(silent, 2*time.Second) {
		t.Error("a connection without a handshake was not closed to make room")
	}
	_ = good.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := good.Read(make([]byte, 1)); err == nil || !isTimeout(err) {
		t.Errorf("the handshaken connection was closed: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
