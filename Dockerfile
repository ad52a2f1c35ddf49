# syntax=docker/dockerfile:1

# The relay as a container: a static binary on a distroless base, run as non-root.
#   docker build -t relay .
#   docker run -e DATABASE_URL=postgres://... -p 8080:8080 relay
# The image has no PostgreSQL server, so DATABASE_URL is required (`relay run` without
# it would look for local server binaries). docker-compose.yml runs it with one.

# GO_VERSION must be at least go.mod's go directive (the image's Go will not fetch a
# newer toolchain); cmd/relay's TestDockerfile checks it.
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that editing code does not invalidate the download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# CGO_ENABLED=0: a static binary, which is what lets the runtime image have no libc.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/relayhq/relay/relay/internal/version.Version=${VERSION}" \
      -o /out/relay ./cmd/relay

# distroless/static: CA certificates (for https:// receivers), tzdata and a nonroot
# user, and nothing else: no shell, so the healthcheck is the binary itself.
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=build /out/relay /relay
USER nonroot:nonroot
ENV RELAY_ADDR=:8080 RELAY_LOG_FORMAT=json
EXPOSE 8080
# `relay healthcheck` GETs /readyz on RELAY_ADDR: exit 0 on 200, 1 otherwise.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/relay", "healthcheck"]
ENTRYPOINT ["/relay"]
CMD ["run"]
