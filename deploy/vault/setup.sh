#!/usr/bin/env bash
# Everything Coalition Exchange needs in Vault, in order. Needs the vault CLI, VAULT_ADDR and an
# admin VAULT_TOKEN. Then: ./partner-role.sh <id> for each partner.
set -euo pipefail
cd "$(dirname "$0")"
./setup-pki.sh
./setup-secrets.sh
./setup-approle.sh
