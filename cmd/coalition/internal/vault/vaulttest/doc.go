// Package vaulttest is an in-process stand-in for the parts of HashiCorp
// Vault the coalition uses, for tests of package vault through the real
// github.com/hashicorp/vault/api client: AppRole login, token
// renew-self/lookup-self, PKI issue/sign/cert/ca_chain, KV v2 read, Transit
// sign/verify, database creds and lease renewal. Its answers follow the
// shapes of Vault's documented JSON responses.
//
// TTLs are controllable, time comes from an injected clock (Clock, or the
// fake time of a testing/synctest bubble), and failures are injectable
// (SetDown, FailNext). It serves over real TCP (Start) or an in-memory
// network (StartPipe) that testing/synctest can wait on.
//
// It must not be used outside tests: it keeps every key in memory, checks
// nothing but token validity and PKI role rules, and has no policies.
package vaulttest
