# coalition-operator: what an operator's token (VAULT_TOKEN) may do for onboarding and support.
# It cannot issue certificates with keys it generates, read the Transit key, or change policies.

# Sign partner CSRs, each with its partner's role (allowed_uri_sans = that partner's URI only).
path "pki_int/sign/partner-*" {
  capabilities = ["create", "update"]
}

# Create the role of a new partner (deploy/vault/partner-role.sh) and read roles.
path "pki_int/roles/partner-*" {
  capabilities = ["create", "update", "read"]
}

# Revoke a partner certificate (by serial).
path "pki_int/revoke" {
  capabilities = ["update"]
}

path "pki_int/cert/ca_chain" {
  capabilities = ["read"]
}

# Manage partner endpoint settings and credentials.
path "secret/data/coalition/partners/*" {
  capabilities = ["create", "update", "read"]
}
path "secret/metadata/coalition/partners/*" {
  capabilities = ["list", "read"]
}

# Verify a statement a partner holds (never sign).
path "transit/verify/statements" {
  capabilities = ["update"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
