# syntax=docker/dockerfile:1.7
# Coalition Exchange images, built from one stage:
#   docker build -t coalition .                      the gateway image (default target): distroless
#                                                    static, non-root, the binary alone
#   docker build --target ops -t coalition-ops .     the same binary on busybox, for Jobs that need
#                                                    a shell (the settlement CronJob computes its cutoff)
# No container engine runs on the development machines or CI, so this file is kept correct by
# review, not by a build in CI (README "Deploy and operate").

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first: the layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Static binary: no cgo, so it runs on distroless/static and scratch. -buildvcs=false because
# .git is not in the build context (.dockerignore).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false -ldflags="-s -w" \
      -o /out/coalition ./cmd/coalition

FROM busybox:1.37-musl AS ops
COPY --from=build /out/coalition /usr/local/bin/coalition
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/coalition"]

FROM gcr.io/distroless/static-debian12:nonroot AS gateway
COPY --from=build /out/coalition /usr/local/bin/coalition
# 65532 is distroless's "nonroot"; the Kubernetes manifests run as the same id.
USER 65532:65532
EXPOSE 7443 7080
ENTRYPOINT ["/usr/local/bin/coalition"]
CMD ["serve"]
