package client

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// FingerprintFile is the name, under a node's home, of the file holding
// the SHA-256 fingerprint of the certificate its API serves over HTTPS
// (absent when the API is plain HTTP on loopback).
const FingerprintFile = "api.fingerprint"

// FingerprintEnv names the environment variable that pins the API's
// certificate for FromHome, over the home's api.fingerprint file.
const FingerprintEnv = "OFFLOAD_API_FINGERPRINT"

// ErrFingerprintMismatch is returned when the API presented a certificate
// other than the pinned one: another server answers at that address, or
// the node's certificate changed.
var ErrFingerprintMismatch = errors.New("api certificate does not match the pinned fingerprint")

// Fingerprint returns the SHA-256 fingerprint of a DER certificate in the
// form nodes write to api.fingerprint: "sha256:" and 64 lowercase hex
// digits.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ParseFingerprint reads a SHA-256 certificate fingerprint written as
// Fingerprint writes it, or as bare hex, upper or lower case, with or
// without colons (as openssl x509 -fingerprint -sha256 prints it).
func ParseFingerprint(s string) ([]byte, error) {
	h := strings.TrimSpace(s)
	if i := strings.IndexByte(h, '='); i >= 0 && strings.HasPrefix(strings.ToLower(h), "sha256 fingerprint=") {
		h = h[i+1:] // openssl's "SHA256 Fingerprint=AB:CD:..."
	}
	if len(h) >= 7 && strings.EqualFold(h[:7], "sha256:") {
		h = h[7:]
	}
	h = strings.ReplaceAll(h, ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("certificate fingerprint %q: want a SHA-256 digest (64 hex digits, as in $OFFLOAD_HOME/%s)", s, FingerprintFile)
	}
	return b, nil
}

// Pin makes the client accept only an API certificate whose SHA-256
// fingerprint is fingerprint (see ParseFingerprint), whoever signed it:
// the pin replaces the certificate authorities and host name checks, so a
// node's self-signed certificate works. A connection to any other
// certificate fails with ErrFingerprintMismatch before a request, or the
// token, is sent. Pin replaces c.HTTP.
func (c *Client) Pin(fingerprint string) error {
	want, err := ParseFingerprint(fingerprint)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is the pin below, not a CA chain: VerifyConnection
		// runs on every handshake, resumed ones included.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: the server presented no certificate", ErrFingerprintMismatch)
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(got[:], want) != 1 {
				return fmt.Errorf("%w: %s presented %s, pinned sha256:%s (check %s or the node's $OFFLOAD_HOME/%s)",
					ErrFingerprintMismatch, c.BaseURL, Fingerprint(cs.PeerCertificates[0].Raw), hex.EncodeToString(want), FingerprintEnv, FingerprintFile)
			}
			return nil
		},
	}
	c.HTTP = &http.Client{Transport: tr}
	return nil
}

// connError explains a failed connection: a certificate problem is said as
// one (the node is running; it is not the one pinned or not trusted),
// anything else means no node answers at the URL.
func (c *Client) connError(err error) error {
	if errors.Is(err, ErrFingerprintMismatch) {
		return fmt.Errorf("connect to %s: %w", c.BaseURL, err)
	}
	var unknown x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &unknown) || errors.As(err, &hostErr) {
		return fmt.Errorf("connect to %s: the API's certificate is not trusted (a node's self-signed certificate must be pinned: set %s or --api-fingerprint to the node's $OFFLOAD_HOME/%s): %w",
			c.BaseURL, FingerprintEnv, FingerprintFile, err)
	}
	return fmt.Errorf("%w at %s (is it still running? start one with `offload node`): %v", ErrNoNode, c.BaseURL, err)
}
