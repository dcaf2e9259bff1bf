# syntax=docker/dockerfile:1

# Build a static binary: no cgo, so it runs on a distroless base without libc.
# The Go release go.mod names as toolchain: standard-library fixes come
# with patch releases (a test checks the two agree).
FROM --platform=$BUILDPLATFORM golang:1.26.11 AS builder
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The version comes from the VERSION file; a VERSION build argument must
# agree with it. The build context holds no .git, so the revision comes in
# as a build argument:
#   docker build --build-arg REVISION=$(git rev-parse HEAD) .
ARG VERSION
ARG REVISION=unknown
RUN version="$(cat VERSION)" && \
    if [ -n "${VERSION}" ] && [ "${VERSION#v}" != "${version}" ]; then \
      echo "build argument VERSION=${VERSION} differs from the VERSION file (${version})" >&2; exit 1; \
    fi && \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags="-s -w -X github.com/prometheus/common/version.Version=${version} -X github.com/prometheus/common/version.Revision=${REVISION}" \
      -o /out/tcpstate-exporter ./cmd/tcpstate-exporter

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /out/tcpstate-exporter /bin/tcpstate-exporter
# nobody: host mode needs no privilege. The Helm chart's pod mode overrides
# the user (uid 0 with only SYS_ADMIN and SYS_PTRACE).
USER 65534:65534
EXPOSE 9874
ENTRYPOINT ["/bin/tcpstate-exporter"]
