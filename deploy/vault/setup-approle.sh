#!/usr/bin/env bash
# Policies and the gateway's AppRole. Writes the role id to stdout and a fresh secret id to
# ./gateway-secret-id (0600): deliver both to the gateway (the Kubernetes overlay reads them from
# the coalition-vault-approle Secret), then delete the file. Re-run to rotate the secret id.
set -euo pipefail
cd "$(dirname "$0")"
source ./env.sh

vault policy write coalition-gateway policies/coalition-gateway.hcl
vault policy write coalition-operator policies/coalition-operator.hcl

vault auth list -format=json | grep -q '"approle/"' || vault auth enable approle
# Short tokens, renewed by the gateway's LifetimeWatcher; a new login at the max TTL.
vault write "auth/approle/role/$APPROLE_ROLE" \
  token_policies=coalition-gateway token_ttl=1h token_max_ttl=24h token_type=service \
  secret_id_ttl=720h secret_id_num_uses=0 bind_secret_id=true

vault read -field=role_id "auth/approle/role/$APPROLE_ROLE/role-id"
umask 077
vault write -f -field=secret_id "auth/approle/role/$APPROLE_ROLE/secret-id" >gateway-secret-id
echo "secret id written to $(pwd)/gateway-secret-id" >&2
