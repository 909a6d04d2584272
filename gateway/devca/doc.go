// Package devca is the local certificate authority that `coalition dev`
// creates and that tests use to obtain real certificates.
//
// It owns the development PKI: a self-signed ECDSA P-256 CA, server leaves
// for the gateway and client leaves that carry exactly one SPIFFE URI SAN
// (spiffe://coalition.local/<role>/<name>), and the on-disk layout written by
// EnsureDir (ca.crt, ca.key, gateway.crt, gateway.key, <identity>.crt,
// <identity>.key).
//
// It must not be used in production: production certificates come from
// Vault PKI through a tlsconfig.CertSource. It must not decide who may do
// what; reading an identity from a verified certificate and authorizing it
// belongs to gateway/tlsconfig and the services. It uses the standard
// library only.
package devca
