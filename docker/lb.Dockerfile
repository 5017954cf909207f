# The load balancer: Debian's HAProxy, configured by `zeod init` from the
# environment (docker/renderer/templates/haproxy.cfg). Renderers are found
# through DNS (Docker's 127.0.0.11 or a cluster DNS), so scaling them needs
# no restart here.
# Build context: the repository root.
#   docker build -f docker/lb.Dockerfile -t zeod-lb .
# Without a registry: --build-arg BASE=local/debian:bookworm
#                     --build-arg RUST_IMAGE=local/rust:1.95.0-bookworm
ARG RUST_IMAGE=rust:1.95-bookworm
ARG BASE=debian:bookworm-slim

# The same stage as in zeod.Dockerfile, instruction for instruction, so
# BuildKit builds it once for every image that needs the binary.
FROM ${RUST_IMAGE} AS zeod
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN --mount=type=cache,id=zeod-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=zeod-target,target=/src/target \
    RUSTFLAGS='-C target-feature=+crt-static' \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --locked --release --target x86_64-unknown-linux-gnu \
 && cp target/x86_64-unknown-linux-gnu/release/zeod /zeod

FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /usr/local/etc/haproxy \
 && chown 65534:65534 /usr/local/etc/haproxy
COPY --from=zeod /zeod /usr/local/bin/zeod
COPY docker/renderer/templates/haproxy.cfg /etc/zeod/templates/
COPY docker/lb/init.toml /etc/zeod/init.toml
COPY docker/lb/healthcheck.sh /usr/local/bin/lb-healthcheck
ENV ZEOD_INIT_CONFIG=/etc/zeod/init.toml

# nobody: haproxy needs no privileges to bind 8080; numeric, so runtimes
# that check runAsNonRoot can see it.
USER 65534:65534
EXPOSE 8080 1936
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD ["/usr/local/bin/lb-healthcheck"]
ENTRYPOINT ["/usr/local/bin/zeod", "init", "--templates", "/etc/zeod/templates", "--"]
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
