package logs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/test/forwardspec"
)

// The OpenTelemetry receiver speaks neither TLS nor the shared-key handshake: these tests use
// test/forwardspec, a receiver written from the protocol's specification.

// selfSigned returns a server certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "receiver"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func startSpecReceiver(t *testing.T, cfg forwardspec.Config) *forwardspec.Server {
	t.Helper()
	cfg.Decode = true
	s, err := forwardspec.Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func wantLines(t *testing.T, s *forwardspec.Server, tag string, n int) {
	t.Helper()
	got := s.Logs(tag)
	if len(got) != n {
		t.Fatalf("%d records under %s, want %d", len(got), tag, n)
	}
	for i, l := range got {
		if l != "line "+strconv.Itoa(i) {
			t.Fatalf("record %d is %q", i, l)
		}
	}
}

func TestForwardClientSpeaksTLSAndTheSharedKeyHandshake(t *testing.T) {
	cert, pool := selfSigned(t)
	tlsServer := &tls.Config{Certificates: []tls.Certificate{cert}}
	cases := []struct {
		name     string
		receiver forwardspec.Config
		client   ForwardClient
		refusal  string // the receiver's reason; empty when the client must succeed
	}{
		{name: "tls", receiver: forwardspec.Config{TLS: tlsServer}, client: ForwardClient{TLS: &tls.Config{RootCAs: pool}}},
		{name: "shared key", receiver: forwardspec.Config{SharedKey: "s3cret", Hostname: "aggregator"},
			client: ForwardClient{SharedKey: "s3cret", SelfHostname: "node-a"}},
		{name: "shared key and user over tls",
			receiver: forwardspec.Config{TLS: tlsServer, SharedKey: "s3cret", Hostname: "aggregator", Users: map[string]string{"agent": "pw"}},
			client:   ForwardClient{TLS: &tls.Config{RootCAs: pool}, SharedKey: "s3cret", SelfHostname: "node-a", Username: "agent", Password: "pw"}},
		{name: "wrong shared key", receiver: forwardspec.Config{SharedKey: "s3cret", Hostname: "aggregator"},
			client: ForwardClient{SharedKey: "guess", SelfHostname: "node-a"}, refusal: "shared key mismatch"},
		{name: "wrong password", receiver: forwardspec.Config{SharedKey: "s3cret", Hostname: "aggregator", Users: map[string]string{"agent": "pw"}},
			client: ForwardClient{SharedKey: "s3cret", SelfHostname: "node-a", Username: "agent", Password: "guess"}, refusal: "username/password mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startSpecReceiver(t, tc.receiver)
			c := tc.client
			c.Receivers, c.Timeout = []string{s.Addr()}, 5*time.Second
			defer c.Close()
			err := sendAll(&c, []Message{message(t, "app", 0, 50, false), message(t, "app", 50, 50, true)})
			if tc.refusal != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refusal) {
					t.Fatalf("sending: %v, want the receiver's refusal %q", err, tc.refusal)
				}
				if got := s.Refusals(); !slices.Equal(got, []string{tc.refusal}) {
					t.Fatalf("receiver refusals %q", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := sendAll(&c, []Message{message(t, "app", 100, 10, false)}); err != nil {
				t.Fatal(err)
			}
			wantLines(t, s, "app", 110)
			if n := s.Connections(); n != 1 {
				t.Errorf("two sends used %d connections, want one kept alive", n)
			}
		})
	}
}

// A client that does not trust the receiver's certificate does not send to it.
func TestForwardClientRefusesAnUntrustedReceiver(t *testing.T) {
	cert, _ := selfSigned(t)
	s := startSpecReceiver(t, forwardspec.Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	c := &ForwardClient{Receivers: []string{s.Addr()}, TLS: &tls.Config{}, Timeout: 5 * time.Second}
	err := sendAll(c, []Message{message(t, "app", 0, 1, false)})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Sending to an untrusted receiver: %v", err)
	}
	if got := s.Logs("app"); len(got) != 0 {
		t.Fatalf("the receiver got %q", got)
	}
}

// A receiver that answers the PONG with a digest of another key is not trusted with the records.
func TestForwardClientChecksTheReceiversDigest(t *testing.T) {
	s := startSpecReceiver(t, forwardspec.Config{SharedKey: "other", Hostname: "impostor", Impostor: true})
	c := &ForwardClient{Receivers: []string{s.Addr()}, SharedKey: "s3cret", SelfHostname: "node-a", Timeout: 5 * time.Second}
	err := sendAll(c, []Message{message(t, "app", 0, 1, false)})
	if err == nil || !strings.Contains(err.Error(), "digest does not match") {
		t.Fatalf("Sending to a receiver that does not know the key: %v", err)
	}
	if got := s.Logs("app"); len(got) != 0 {
		t.Fatalf("the receiver got %q", got)
	}
}

// A receiver that takes the connection but never acknowledges makes the wait for its ack fail after the
// timeout, so the shipper tries again (and the next receiver), instead of waiting forever.
func TestForwardClientTimesOutWithoutAnAck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // read nothing, answer nothing
		}
	}()
	c := &ForwardClient{Receivers: []string{l.Addr().String()}, Timeout: 300 * time.Millisecond}
	start := time.Now()
	err = sendAll(c, []Message{message(t, "app", 0, 1, false)})
	if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("Sending to a receiver that never acks: %v after %v, want a time-out", err, time.Since(start))
	}
}

// A receiver whose HELO says keepalive false takes one message per connection: the client sends each
// message of a batch on a connection of its own, and none arrives twice.
func TestForwardClientSendsOneMessagePerConnectionWithoutKeepalive(t *testing.T) {
	s := startSpecReceiver(t, forwardspec.Config{SharedKey: "s3cret", Hostname: "aggregator", NoKeepalive: true})
	c := &ForwardClient{Receivers: []string{s.Addr()}, SharedKey: "s3cret", SelfHostname: "node-a", Timeout: 5 * time.Second}
	defer c.Close()
	if err := sendAll(c, []Message{message(t, "app", 0, 50, false), message(t, "app", 50, 50, true),
		message(t, "app", 100, 10, false)}); err != nil {
		t.Fatal(err)
	}
	if err := sendAll(c, []Message{message(t, "app", 110, 10, false)}); err != nil {
		t.Fatal(err)
	}
	wantLines(t, s, "app", 120)
	if n := s.Connections(); n != 4 {
		t.Errorf("four messages used %d connections, want one each", n)
	}
}
