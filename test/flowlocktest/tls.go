package flowlocktest

import (
	"crypto/tls"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// DialTLS returns a gRPC connection to the service over TLS with cfg
// (RootCAs, ServerName and, for mutual TLS, Certificates), closed when t
// ends. Like grpc.NewClient it connects lazily: a refused handshake shows
// as the first call's error.
func (s *Service) DialTLS(t *testing.T, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
