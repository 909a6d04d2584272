#!/usr/bin/env bash
# Root CA, issuing intermediate and the gateway role. Idempotent where Vault allows: it refuses to
# replace an existing root or intermediate (rotate the intermediate with
# docs/runbooks/vault-intermediate-rotation.md). Needs VAULT_ADDR and an admin VAULT_TOKEN.
set -euo pipefail
cd "$(dirname "$0")"
source ./env.sh

mounted() { vault secrets list -format=json | grep -q "\"$1/\""; }

if ! mounted "$ROOT_MOUNT"; then
  vault secrets enable -path="$ROOT_MOUNT" -max-lease-ttl=87600h pki
  vault write -field=certificate "$ROOT_MOUNT/root/generate/internal" \
    common_name="Coalition Exchange Root CA" issuer_name="root-$(date +%Y)" ttl=87600h key_type=ec key_bits=384 >root-ca.crt
  echo "root CA written to root-ca.crt"
fi

if ! mounted "$PKI_MOUNT"; then
  vault secrets enable -path="$PKI_MOUNT" -max-lease-ttl=43800h pki
  csr=$(vault write -field=csr "$PKI_MOUNT/intermediate/generate/internal" \
    common_name="Coalition Exchange Issuing CA $(date +%Y-%m)" key_type=ec key_bits=256)
  vault write -field=certificate "$ROOT_MOUNT/root/sign-intermediate" \
    csr="$csr" format=pem_bundle ttl=43800h use_csr_values=false \
    common_name="Coalition Exchange Issuing CA $(date +%Y-%m)" >intermediate.crt
  vault write "$PKI_MOUNT/intermediate/set-signed" certificate=@intermediate.crt
  rm -f intermediate.crt
fi
vault write "$PKI_MOUNT/config/urls" \
  issuing_certificates="$VAULT_ADDR/v1/$PKI_MOUNT/ca" crl_distribution_points="$VAULT_ADDR/v1/$PKI_MOUNT/crl"

# The gateway: its DNS names and exactly its SPIFFE ID; server and client usage (outbound calls).
vault write "$PKI_MOUNT/roles/gateway" \
  allowed_domains="$GATEWAY_DNS" allow_bare_domains=true allow_subdomains=false allow_glob_domains=false \
  allow_localhost=false allow_ip_sans=true allow_any_name=false enforce_hostnames=true \
  allowed_uri_sans="spiffe://$TRUST_DOMAIN/gateway" \
  server_flag=true client_flag=true key_type=ec key_bits=256 \
  ttl="$GATEWAY_TTL" max_ttl=72h not_before_duration=30s no_store=true

echo "pki ready: $PKI_MOUNT/issue/gateway; add partners with ./partner-role.sh <partner-id>"
