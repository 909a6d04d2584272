#!/usr/bin/env bash
# validate-manifests.sh: render every overlay in deploy/kubernetes/overlays with kustomize and
# validate each rendered object against the Kubernetes JSON schemas with kubeconform, strict
# (unknown fields are errors), failing on any invalid object or any object without a schema.
#
# Both tools run through `go run` of pinned versions. kubeconform normally downloads its
# schemas; CI reaches only package registries, so the schemas are generated from the
# Kubernetes OpenAPI document inside the k8s.io/kubernetes Go module (fetched through the Go
# module proxy) by scripts/kubeschemas, and cached. The one custom resource, ServiceMonitor,
# is validated against deploy/kubernetes/schemas/ (a hand-written subset of the
# prometheus-operator CRD: see the README there).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
KUSTOMIZE_VERSION=v5.8.2     # v5.8.3 needs Go 1.27
KUBECONFORM_VERSION=v0.8.0
KUBERNETES_VERSION=1.36.3    # the API version the manifests are checked against
KUSTOMIZE=("$GO" run "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}")
KUBECONFORM=("$GO" run "github.com/yannh/kubeconform/cmd/kubeconform@${KUBECONFORM_VERSION}")

cache=${COALITION_SCHEMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coalition/kubeschemas}
schemas="$cache/v${KUBERNETES_VERSION}-standalone-strict"

# ensure_schemas generates the built-in schemas once per Kubernetes version.
ensure_schemas() {
	if [[ -f "$schemas/.complete" ]]; then
		return
	fi
	local dir
	# Outside the project's module, so its go.mod and go.sum stay untouched.
	dir=$(cd / && GOFLAGS= "$GO" mod download -json "k8s.io/kubernetes@v${KUBERNETES_VERSION}" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [[ -z "$dir" || ! -f "$dir/api/openapi-spec/swagger.json" ]]; then
		echo "validate-manifests: no OpenAPI document in k8s.io/kubernetes@v${KUBERNETES_VERSION}" >&2
		exit 1
	fi
	rm -rf "$schemas"
	"$GO" run ./scripts/kubeschemas -spec "$dir/api/openapi-spec/swagger.json" -out "$schemas"
	touch "$schemas/.complete"
}

ensure_schemas
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

status=0
for overlay in deploy/kubernetes/overlays/*/; do
	name=$(basename "$overlay")
	rendered="$out/$name.yaml"
	"${KUSTOMIZE[@]}" build "$overlay" >"$rendered"
	echo "validate-manifests: $name: $(grep -c '^kind:' "$rendered") objects rendered"
	if ! "${KUBECONFORM[@]}" -strict -summary \
		-kubernetes-version "$KUBERNETES_VERSION" \
		-schema-location "$schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
		-schema-location "deploy/kubernetes/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
		"$rendered"; then
		status=1
	fi
done
if [[ $status -ne 0 ]]; then
	echo "validate-manifests: schema errors above" >&2
fi
exit $status
