# coalition-gateway: what `coalition serve` may do with its AppRole token. Nothing else.

# Its own server/outbound certificate, from the gateway role only.
path "pki_int/issue/gateway" {
  capabilities = ["create", "update"]
}

# The CA chain that verifies partner certificates.
path "pki_int/cert/ca_chain" {
  capabilities = ["read"]
}

# Partner endpoint settings and credentials (KV v2), read only.
path "secret/data/coalition/partners/*" {
  capabilities = ["read"]
}

# Sign and verify settlement statements; the key never leaves Vault.
path "transit/sign/statements" {
  capabilities = ["update"]
}
path "transit/verify/statements" {
  capabilities = ["update"]
}

# Dynamic database users, and renewing their leases.
path "database/creds/coalition-gateway" {
  capabilities = ["read"]
}
path "sys/leases/renew" {
  capabilities = ["update"]
}

# Keep its own token alive.
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
