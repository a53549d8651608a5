# syntax=docker/dockerfile:1
#
# The runtime image of the Temporal Aurora DSQL fork (iw/temporal), built by `cargo xtask build`.
#
# The fork is not part of this build context: it comes in as the named context `fork`
# (`--build-context fork=<checkout>` or `fork=<git URL>#<commit>`), so nothing is ever written into
# the fork's checkout. This repository's context holds only what `.dockerignore` lets through.
#
# The builder runs on the build machine's own platform and cross-compiles (pure Go, CGO off), so an
# arm64 image builds at native speed on an amd64 host and the reverse; only the runtime base is
# pulled for the target platform, and nothing runs on it.

# Set by the xtask from the fork's go.mod (`toolchain`, else `go` directive). For a git URL the
# default below is used and GOTOOLCHAIN=auto fetches a newer toolchain when go.mod asks for one.
ARG GO_VERSION=1.25.5
# The runtime base, pinned to a release.
ARG ALPINE_VERSION=3.23.0

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-alpine AS builder
ENV CGO_ENABLED=0 \
    GOTOOLCHAIN=auto \
    GOFLAGS=-buildvcs=false \
    GOMODCACHE=/go/pkg/mod \
    GOCACHE=/root/.cache/go-build
WORKDIR /src

# Modules first: this step's cache key is go.mod + go.sum only, and it is the same for every
# target platform, so it runs once per dependency change, not per source change or per arch.
RUN --mount=type=bind,from=fork,source=go.mod,target=go.mod \
    --mount=type=bind,from=fork,source=go.sum,target=go.sum \
    --mount=type=cache,id=tdsql-go-mod,target=/go/pkg/mod \
    go mod download

# The source is bind-mounted, never copied into a layer. Any change to it reruns this step, and the
# build cache mount makes that an incremental compile: only changed packages and their dependents
# are rebuilt, then the binaries are relinked.
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=bind,from=fork,target=/src \
    --mount=type=cache,id=tdsql-go-mod,target=/go/pkg/mod \
    --mount=type=cache,id=tdsql-go-build,target=/root/.cache/go-build \
    set -eu; \
    export GOOS="$TARGETOS" GOARCH="$TARGETARCH"; \
    build() { go build -trimpath -tags disable_grpc_modules -o "/out/$1" "$2"; }; \
    build temporal-server ./cmd/server; \
    if [ -d cmd/tools/dsql ]; then build temporal-dsql-tool ./cmd/tools/dsql; fi; \
    if [ -d cmd/tools/elasticsearch ]; then build temporal-elasticsearch-tool ./cmd/tools/elasticsearch; fi

# Runtime files are prepared on the build platform too: the target-platform stage below runs no
# command, so an arm64 image builds on an amd64 host (and the reverse) without QEMU emulation.
FROM --platform=$BUILDPLATFORM alpine:${ALPINE_VERSION} AS runtime-files
# Versions follow the pinned Alpine release; its repository keeps only the newest build of each
# package, so pinning them here would break the build at the next security update.
# hadolint ignore=DL3018
RUN apk add --no-cache ca-certificates tzdata \
    && addgroup -S -g 1000 temporal \
    && adduser -S -D -H -u 1000 -G temporal -h /etc/temporal -s /sbin/nologin temporal \
    && mkdir -p /etc/temporal/config

# Everything copied here is the same on every architecture (text, certificates, zoneinfo).
FROM alpine:${ALPINE_VERSION}
COPY --from=runtime-files /etc/passwd /etc/group /etc/
COPY --from=runtime-files /etc/ssl/certs/ /etc/ssl/certs/
COPY --from=runtime-files /usr/share/ca-certificates/ /usr/share/ca-certificates/
COPY --from=runtime-files /usr/share/zoneinfo/ /usr/share/zoneinfo/
COPY --from=runtime-files --chown=1000:1000 /etc/temporal/ /etc/temporal/
COPY --from=builder /out/ /usr/local/bin/
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/entrypoint.sh
WORKDIR /etc/temporal
USER 1000:1000
# gRPC, membership, frontend HTTP, Prometheus metrics, pprof.
EXPOSE 7233 7234 7235 7239 6933 6934 6935 6939 8233 9090 7936
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]

# Last, so a new commit or build time changes only the image config, never a layer.
ARG SOURCE=""
ARG REVISION=""
ARG CREATED=""
ARG VERSION=""
LABEL org.opencontainers.image.title="temporal-dsql-server" \
      org.opencontainers.image.description="Temporal server with the Aurora DSQL persistence plugin" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.version="${VERSION}"
