// Package vault is the coalition's adapter to HashiCorp Vault, built on the
// official github.com/hashicorp/vault/api client. It owns:
//
//   - the token lifecycle (Client): AppRole login, or an operator's
//     VAULT_TOKEN; renewal with a LifetimeWatcher; a new login when the
//     token reaches its max TTL or renewal fails; bounded backoff;
//   - CertSource: the gateway's certificate from a PKI role, re-issued at
//     2/3 of its life and swapped atomically, and the client CA pool read
//     from the mount; it implements tlsconfig.CertSource and serves the same
//     certificate to outbound calls through GetClientCertificate;
//   - partner onboarding by CSR (CheckPartnerCSR, SignPartnerCSR): a CSR is
//     checked here before Vault signs it for exactly one partner URI SAN;
//   - TransitSigner, which implements settlement.StatementSigner;
//   - KV, partner endpoint settings and credentials from KV v2, and
//     DatabaseCredentials, dynamic database users with a renewed lease.
//
// It must never log, wrap into an error, or return in a message a token, a
// secret id, a private key or a secret value: errors name paths and
// fields, never contents. It must not decide who may do what: Vault policies
// (deploy/vault) and the gateway do that. Time is read through Clock, so tests
// move it instead of sleeping.
package vault
