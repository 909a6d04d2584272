# Shared settings of the deploy/vault scripts; override any of them in the environment.
: "${TRUST_DOMAIN:=coalition.local}"
: "${ROOT_MOUNT:=pki}"               # offline-able root CA mount
: "${PKI_MOUNT:=pki_int}"           # issuing intermediate: gateway and partner certificates
: "${GATEWAY_DNS:=gateway.coalition.example}"  # comma list of the gateway's DNS names
: "${GATEWAY_TTL:=24h}"
: "${PARTNER_TTL:=720h}"            # partner certificates: 30 days, re-signed from a new CSR
: "${KV_MOUNT:=secret}"
: "${TRANSIT_MOUNT:=transit}"
: "${TRANSIT_KEY:=statements}"
: "${APPROLE_ROLE:=coalition-gateway}"
# The paths in policies/*.hcl assume pki_int, secret, transit and database: change both together.
