#!/usr/bin/env bash
# Creates (or updates) the PKI role of one partner: it can sign a certificate carrying exactly
# spiffe://$TRUST_DOMAIN/partner/<id> and nothing else (no DNS name, IP, email or common name),
# for client authentication only, with a short TTL. `coalition partner sign-csr --partner <id>`
# signs with it. Needs an admin or coalition-operator token.
set -euo pipefail
cd "$(dirname "$0")"
source ./env.sh

id=${1:?usage: partner-role.sh <partner-id>}
if ! [[ $id =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]]; then
  echo "invalid partner id $id: want ^[a-z0-9][a-z0-9-]{0,62}\$" >&2
  exit 2
fi

vault write "$PKI_MOUNT/roles/partner-$id" \
  allow_any_name=false allowed_domains="" allow_bare_domains=false allow_subdomains=false \
  allow_glob_domains=false allow_localhost=false allow_ip_sans=false allowed_other_sans="" \
  allowed_uri_sans="spiffe://$TRUST_DOMAIN/partner/$id" enforce_hostnames=true \
  require_cn=false use_csr_common_name=false use_csr_sans=false \
  server_flag=false client_flag=true code_signing_flag=false email_protection_flag=false \
  key_type=any ttl="$PARTNER_TTL" max_ttl="$PARTNER_TTL" not_before_duration=30s

echo "role $PKI_MOUNT/roles/partner-$id allows only spiffe://$TRUST_DOMAIN/partner/$id"
