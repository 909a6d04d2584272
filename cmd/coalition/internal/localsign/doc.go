// Package localsign is the dev implementation of settlement.StatementSigner:
// an ed25519 key kept in a file of the dev data directory, created on first
// use, producing signatures in Vault Transit's "vault:v1:<base64>" format so
// that statements read the same in dev and production.
//
// It must not be used in production: the key sits on disk, in the clear.
// Production signs with Vault Transit (package vault).
package localsign
