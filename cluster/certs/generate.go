package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Validity periods, in calendar years, and clock-skew allowance of generated
// certificates.
const (
	caValidityYears   = 10
	leafValidityYears = 2
	clockSkew         = time.Hour
)

// File modes of a TLS directory and its files.
const (
	dirMode  fs.FileMode = 0o700
	keyMode  fs.FileMode = 0o600
	certMode fs.FileMode = 0o644
)

// caCommonName is the subject CN of the cluster CA.
const caCommonName = "Tolerex cluster CA"

// GenerateOptions tunes Generate.
type GenerateOptions struct {
	// Hosts are extra subject alternative names for the node certificates,
	// besides localhost, 127.0.0.1 and ::1. Each is an IP address or a DNS
	// name (a leading "*." wildcard is allowed).
	Hosts []string
	// Force overwrites existing files; without it Generate refuses to.
	Force bool
	// Now is the issue time; the zero value means time.Now().
	Now time.Time
}

// pemFile is one file Generate writes.
type pemFile struct {
	name      string
	blockType string
	der       []byte
	mode      fs.FileMode
}

// Generate creates a cluster CA and a certificate for every role in dir
// (created with mode 0700 if missing) and returns the paths it wrote, in the
// order ca.crt, ca.key, gateway.crt, gateway.key, member.crt, member.key.
// Private keys are written 0600, certificates 0644, each atomically. Unless
// opts.Force is set, Generate refuses to overwrite any existing file and
// writes nothing; that error names the files and wraps fs.ErrExist. If a
// write fails, Generate returns the paths written before it with the error.
func Generate(dir string, opts GenerateOptions) ([]string, error) {
	if dir == "" {
		return nil, errors.New("generate certificates: empty directory name")
	}
	dnsNames, ips, err := subjectAltNames(opts.Hosts)
	if err != nil {
		return nil, fmt.Errorf("generate certificates: %w", err)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}

	names := []string{CACertFile, CAKeyFile}
	for _, role := range roles() {
		names = append(names, role.CertFile(), role.KeyFile())
	}
	if !opts.Force {
		if err := refuseExisting(dir, names); err != nil {
			return nil, err
		}
	}

	files, err := issueAll(now, dnsNames, ips)
	if err != nil {
		return nil, fmt.Errorf("generate certificates for %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("create TLS directory %s: %w", dir, err)
	}
	written := make([]string, 0, len(files))
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		data := pem.EncodeToMemory(&pem.Block{Type: f.blockType, Bytes: f.der})
		if err := writeFileAtomic(path, data, f.mode); err != nil {
			return written, err
		}
		written = append(written, path)
	}
	return written, nil
}

// refuseExisting fails, naming them, if any of the files exist in dir. The
// error wraps fs.ErrExist.
func refuseExisting(dir string, names []string) error {
	var existing []string
	for _, name := range names {
		path := filepath.Join(dir, name)
		_, err := os.Lstat(path)
		switch {
		case err == nil:
			existing = append(existing, path)
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("check %s: %w", path, err)
		}
	}
	if len(existing) > 0 {
		return fmt.Errorf("refusing to overwrite %s: %w", strings.Join(existing, ", "), fs.ErrExist)
	}
	return nil
}

// issueAll creates the CA and every role's pair, returning the files to
// write in order.
func issueAll(now time.Time, dnsNames []string, ips []net.IP) ([]pemFile, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	caSerial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          caSerial,
		Subject:               pkix.Name{CommonName: caCommonName, Organization: []string{"Tolerex"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.AddDate(caValidityYears, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	caKeyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	files := []pemFile{
		{name: CACertFile, blockType: "CERTIFICATE", der: caDER, mode: certMode},
		{name: CAKeyFile, blockType: keyBlockType, der: caKeyDER, mode: keyMode},
	}
	for _, role := range roles() {
		certDER, keyDER, err := issueLeaf(role, now, dnsNames, ips, caCert, caKey)
		if err != nil {
			return nil, fmt.Errorf("%s certificate: %w", role, err)
		}
		files = append(files,
			pemFile{name: role.CertFile(), blockType: "CERTIFICATE", der: certDER, mode: certMode},
			pemFile{name: role.KeyFile(), blockType: keyBlockType, der: keyDER, mode: keyMode},
		)
	}
	return files, nil
}

// issueLeaf creates a key and a CA-signed certificate for role, usable both
// as a TLS server and as a TLS client. It returns the DER certificate and the
// PKCS#8 DER key.
func issueLeaf(role Role, now time.Time, dnsNames []string, ips []net.IP,
	ca *x509.Certificate, caKey crypto.Signer) (certDER, keyDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	roleURI, err := url.Parse(role.URI())
	if err != nil {
		return nil, nil, fmt.Errorf("role URI: %w", err)
	}
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         "tolerex " + string(role),
			Organization:       []string{"Tolerex"},
			OrganizationalUnit: []string{string(role)},
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.AddDate(leafValidityYears, 0, 0),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		URIs:                  []*url.URL{roleURI},
	}
	certDER, err = x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	keyDER, err = x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	return certDER, keyDER, nil
}

// randomSerial returns a random positive serial number of up to 128 bits.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	limit.Sub(limit, big.NewInt(1))
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// subjectAltNames returns the DNS and IP SANs of node certificates: the
// loopback defaults followed by every host, each parsed as an IP address if it
// is one and else checked as a DNS name. Duplicates are dropped.
func subjectAltNames(hosts []string) ([]string, []net.IP, error) {
	dnsNames := []string{"localhost"}
	ips := []net.IP{net.ParseIP("127.0.0.1").To4(), net.ParseIP("::1")}
	for _, host := range hosts {
		host = strings.TrimSpace(host)
		if host == "" {
			return nil, nil, errors.New("empty host name")
		}
		if ip := net.ParseIP(host); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		name := strings.ToLower(host)
		if err := checkDNSName(name); err != nil {
			return nil, nil, fmt.Errorf("host %q: %w", host, err)
		}
		if !slices.Contains(dnsNames, name) {
			dnsNames = append(dnsNames, name)
		}
	}
	return dnsNames, ips, nil
}

// checkDNSName accepts a lower-case DNS name of letters, digits and hyphens in
// dot-separated labels of 1 to 63 characters that neither start nor end with a
// hyphen, at most 253 characters long, optionally starting with "*.".
func checkDNSName(name string) error {
	if len(name) > 253 {
		return errors.New("not a DNS name: longer than 253 characters")
	}
	labels := strings.Split(strings.TrimPrefix(name, "*."), ".")
	for _, label := range labels {
		if label == "" {
			return errors.New("not an IP address or DNS name: empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("not a DNS name: label %q longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("not a DNS name: label %q starts or ends with '-'", label)
		}
		for _, c := range label {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return fmt.Errorf("not an IP address or DNS name: character %q", c)
			}
		}
	}
	return nil
}

// writeFileAtomic writes data to path with the given mode through a temporary
// file in the same directory, synced and renamed into place, so a crash
// leaves either the old file or the complete new one.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: chmod temporary file: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: rename into place: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// syncDir flushes a directory so a rename into it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	syncErr := d.Sync()
	closeErr := d.Close()
	if syncErr != nil {
		return fmt.Errorf("sync directory %s: %w", dir, syncErr)
	}
	if closeErr != nil {
		return fmt.Errorf("close directory %s: %w", dir, closeErr)
	}
	return nil
}
