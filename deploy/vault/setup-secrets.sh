#!/usr/bin/env bash
# KV v2 for partner endpoint settings, Transit key for statement signatures, and (when
# DATABASE_ADMIN_URL is set) the database secrets engine for the gateway's dynamic users.
set -euo pipefail
cd "$(dirname "$0")"
source ./env.sh

mounted() { vault secrets list -format=json | grep -q "\"$1/\""; }

mounted "$KV_MOUNT" || vault secrets enable -path="$KV_MOUNT" -version=2 kv
# Example: vault kv put -mount=secret coalition/partners/acme-air endpoint=https://acme.example:443 api_key=...

mounted "$TRANSIT_MOUNT" || vault secrets enable -path="$TRANSIT_MOUNT" transit
vault read "$TRANSIT_MOUNT/keys/$TRANSIT_KEY" >/dev/null 2>&1 ||
  vault write -f "$TRANSIT_MOUNT/keys/$TRANSIT_KEY" type=ecdsa-p256 exportable=false allow_plaintext_backup=false
# Old versions must keep verifying statements partners hold: never raise min_decryption_version.

if [[ -n ${DATABASE_ADMIN_URL:-} ]]; then
  mounted database || vault secrets enable database
  vault write database/config/coalition plugin_name=postgresql-database-plugin \
    connection_url="$DATABASE_ADMIN_URL" allowed_roles=coalition-gateway
  vault write database/roles/coalition-gateway db_name=coalition \
    creation_statements="CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE coalition_app;" \
    default_ttl=1h max_ttl=720h
  echo "serve with --vault-database-role coalition-gateway" >&2
fi
