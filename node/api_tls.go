package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/offload-project/offload/client"
)

// Files under a node's home for the API's self-signed certificate.
const (
	APICertFile = "api.crt"
	APIKeyFile  = "api.key"
)

// selfSignedValidity is how long a generated API certificate is valid.
// Clients pin it by fingerprint, so expiry is not what keeps it safe; it
// is long so that a pinned node keeps working.
const selfSignedValidity = 10 * 365 * 24 * time.Hour

// apiTLS says how the API serves.
type apiTLS int

const (
	// tlsOff: plain HTTP (loopback only).
	tlsOff apiTLS = iota
	// tlsGiven: HTTPS with the operator's certificate.
	tlsGiven
	// tlsSelfSigned: HTTPS with the certificate the node generated.
	tlsSelfSigned
)

// apiTLSPlan decides how an API listening on host serves. The rule: beyond
// loopback only with allowRemote, and there always over HTTPS; on loopback
// plain HTTP unless forced (Config.APITLS) or a certificate is given.
// certFile and keyFile go together. There is no way to ask for plain HTTP
// on a non-loopback address: a stranger on the path would read the token.
func apiTLSPlan(host string, allowRemote, force bool, certFile, keyFile string) (apiTLS, error) {
	if (certFile == "") != (keyFile == "") {
		return tlsOff, errors.New("api tls: give both --api-tls-cert and --api-tls-key, or neither")
	}
	loopback := isLoopback(host)
	if !loopback && !allowRemote {
		return tlsOff, fmt.Errorf("api address %q is not loopback: pass --api-allow-remote to expose the API beyond this machine (it is then served over HTTPS)", host)
	}
	switch {
	case certFile != "":
		return tlsGiven, nil
	case !loopback || force:
		return tlsSelfSigned, nil
	default:
		return tlsOff, nil
	}
}

// apiCertificate loads the certificate plan asks for, and returns it with
// its fingerprint (client.Fingerprint of the leaf).
func apiCertificate(plan apiTLS, home, certFile, keyFile string, host string) (tls.Certificate, string, error) {
	var cert tls.Certificate
	var err error
	switch plan {
	case tlsGiven:
		cert, err = tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return tls.Certificate{}, "", fmt.Errorf("api tls: load certificate: %w", err)
		}
	case tlsSelfSigned:
		cert, err = selfSigned(home, host)
		if err != nil {
			return tls.Certificate{}, "", err
		}
	default:
		return tls.Certificate{}, "", errors.New("api tls: no certificate for plain HTTP")
	}
	if len(cert.Certificate) == 0 {
		return tls.Certificate{}, "", errors.New("api tls: the certificate file holds no certificate")
	}
	return cert, client.Fingerprint(cert.Certificate[0]), nil
}

// selfSigned returns the node's self-signed API certificate, generating it
// the first time (an ECDSA P-256 key and certificate, both 0600 in home):
// clients pin its fingerprint, so it must not change between starts.
func selfSigned(home, host string) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(home, APICertFile), filepath.Join(home, APIKeyFile)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil {
		return cert, nil
	}
	if _, serr := os.Stat(certPath); !errors.Is(serr, fs.ErrNotExist) {
		// A certificate is there but does not load: replacing it would
		// silently break every client that pinned it.
		return tls.Certificate{}, fmt.Errorf("api tls: load %s: %w (remove %s and %s to generate a new certificate; clients must then pin the new fingerprint)", certPath, err, certPath, keyPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("api tls: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("api tls: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "offload node API"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	} else if ip == nil && host != "" && host != "localhost" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("api tls: create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("api tls: encode key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// The key first: a certificate on disk always has its key.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("api tls: %w", err)
	}
	if err := writeFileAtomic(certPath, certPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("api tls: %w", err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("api tls: %w", err)
	}
	return cert, nil
}
