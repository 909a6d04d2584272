// Package tlsconfig owns the gateway's mutual TLS: the TLS 1.3 server and
// client configurations, the CertSource through which certificates and the
// client CA pool rotate without a restart (FileSource reads them from disk;
// a Vault PKI source implements the same interface elsewhere), and the
// extraction of the caller's Identity from its verified client certificate.
//
// It must not authorize: it says who the caller is (role and name from the
// single SPIFFE URI SAN of the verified leaf), never what the caller may do.
// It must not read identity from anything but verified chains: not from
// PeerCertificates, the common name, metadata or headers. It must not issue
// certificates; gateway/devca and Vault do that.
package tlsconfig
