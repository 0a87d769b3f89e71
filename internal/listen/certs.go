package listen

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// maxPEMFileSize bounds the certificate, key and CA files read, so that a
// wrong path (a log file, /dev/zero) fails instead of filling memory.
const maxPEMFileSize = 1 << 20

// DefaultPoll is how often, at most, Certs looks at its files for a change.
const DefaultPoll = time.Second

// CertOptions name the files of a TLS listener.
type CertOptions struct {
	// CertFile and KeyFile are the PEM server certificate chain and its
	// private key. Both are required.
	CertFile, KeyFile string

	// ClientCAFile is a PEM bundle of the CAs that sign client
	// certificates. When set, a client must present a valid, unexpired
	// certificate signed by one of them (mutual TLS); when empty, no
	// client certificate is asked for.
	ClientCAFile string

	// NextProtos are the ALPN protocols offered: "h2" for gRPC,
	// "http/1.1" for HTTP/1 servers.
	NextProtos []string

	// Poll is how often, at most, the files are checked for a change (on
	// a handshake, never in the background). 0 means DefaultPoll.
	Poll time.Duration

	// Logger receives a warning when changed files cannot be loaded (the
	// previous ones stay in use). nil discards.
	Logger *slog.Logger
}

// Certs serves a TLS configuration from files and reloads it when they
// change: on a handshake at least Poll after the last look, the files are
// stat'ed, and read again if any changed. A half-written rotation (a new
// certificate with the old key) fails to load and is retried at the next
// look; until then the previous files stay in use.
type Certs struct {
	opts CertOptions
	log  *slog.Logger

	mu      sync.Mutex // guards the following fields
	checked time.Time
	stamps  []os.FileInfo // of CertFile, KeyFile, ClientCAFile as last loaded
	current *tls.Config
	lastErr string
}

// LoadCerts reads the files of opts. The error names the file at fault.
func LoadCerts(opts CertOptions) (*Certs, error) {
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	c := &Certs{opts: opts, log: opts.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	cfg, stamps, err := c.load()
	if err != nil {
		return nil, err
	}
	c.current, c.stamps, c.checked = cfg, stamps, time.Now()
	return c, nil
}

// ServerConfig returns the configuration to give a TLS server. Every
// handshake gets the current files, and a connection from a Listener is
// marked established once its handshake (and, with a client CA, the client
// certificate) is verified.
func (c *Certs) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: c.opts.NextProtos,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cfg := c.config(time.Now()).Clone()
			cfg.VerifyConnection = func(tls.ConnectionState) error {
				MarkEstablished(hello.Conn)
				return nil
			}
			return cfg, nil
		},
	}
}

// config returns the current configuration, reloading it first if Poll has
// passed since the last look and a file changed.
func (c *Certs) config(now time.Time) *tls.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.checked) < c.opts.Poll {
		return c.current
	}
	c.checked = now
	if !c.changedLocked() {
		return c.current
	}
	cfg, stamps, err := c.load()
	if err != nil {
		if msg := err.Error(); msg != c.lastErr {
			c.lastErr = msg
			c.log.Warn("tls files changed but cannot be loaded; keeping the previous ones", "err", err)
		}
		return c.current
	}
	c.current, c.stamps, c.lastErr = cfg, stamps, ""
	c.log.Info("tls files reloaded", "cert_file", c.opts.CertFile, "client_ca_file", c.opts.ClientCAFile)
	return c.current
}

// changedLocked reports whether any file differs from when it was loaded.
func (c *Certs) changedLocked() bool {
	for i, name := range c.files() {
		fi, err := os.Stat(name)
		if err != nil {
			return true // gone or unreadable: load says which
		}
		old := c.stamps[i]
		if !os.SameFile(old, fi) || !old.ModTime().Equal(fi.ModTime()) || old.Size() != fi.Size() {
			return true
		}
	}
	return false
}

// files lists the files of c, the client CA last when there is one.
func (c *Certs) files() []string {
	if c.opts.ClientCAFile == "" {
		return []string{c.opts.CertFile, c.opts.KeyFile}
	}
	return []string{c.opts.CertFile, c.opts.KeyFile, c.opts.ClientCAFile}
}

// load reads the files and builds the configuration that handshakes use.
// The stamps are taken before reading, so a change during the read is seen
// at the next look.
func (c *Certs) load() (*tls.Config, []os.FileInfo, error) {
	files := c.files()
	stamps := make([]os.FileInfo, len(files))
	data := make([][]byte, len(files))
	for i, name := range files {
		fi, b, err := readPEMFile(name)
		if err != nil {
			return nil, nil, err
		}
		stamps[i], data[i] = fi, b
	}
	pair, err := tls.X509KeyPair(data[0], data[1])
	if err != nil {
		return nil, nil, fmt.Errorf("tls certificate %s with key %s: %w", c.opts.CertFile, c.opts.KeyFile, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   c.opts.NextProtos,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.NoClientCert,
	}
	if c.opts.ClientCAFile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data[2]) {
			return nil, nil, fmt.Errorf("client CA file %s: no PEM certificate in it", c.opts.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, stamps, nil
}

// readPEMFile reads a regular file of at most maxPEMFileSize bytes.
func readPEMFile(name string) (os.FileInfo, []byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err // *PathError names the file
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: not a regular file", name)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > maxPEMFileSize {
		return nil, nil, fmt.Errorf("%s: larger than %d bytes, too large for a PEM file", name, maxPEMFileSize)
	}
	return fi, b, nil
}
