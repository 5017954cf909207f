# The ZEO storage node: `zeod serve`, a static binary in an empty image.
# Build context: the repository root.
#   docker build -f docker/zeod.Dockerfile -t zeod .
# Without a registry, pass a local Rust image: --build-arg RUST_IMAGE=local/rust:1.95.0-bookworm
ARG RUST_IMAGE=rust:1.95-bookworm

FROM ${RUST_IMAGE} AS zeod
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The cache mounts keep the crate registry and the target dir between builds,
# so a source change recompiles only this crate. The binary is copied out:
# cache mounts are not part of the image. Stripped: a scratch image has no
# debugger, and symbols and line tables would make it several times larger.
# renderer.Dockerfile and lb.Dockerfile repeat this stage verbatim, so
# BuildKit builds it once for all three images.
RUN --mount=type=cache,id=zeod-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=zeod-target,target=/src/target \
    RUSTFLAGS='-C target-feature=+crt-static' \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --locked --release --target x86_64-unknown-linux-gnu \
 && cp target/x86_64-unknown-linux-gnu/release/zeod /zeod
RUN mkdir -p /rootfs/data/blobs /rootfs/backups && chown -R 65534:65534 /rootfs/data /rootfs/backups

FROM scratch
COPY --from=zeod /zeod /zeod
# An empty /data (and /backups, for the scheduled backups) owned by the
# server's user, so a fresh named volume inherits that owner and the server
# can create Data.fs without a root init step.
COPY --from=zeod /rootfs/ /
USER 65534:65534
VOLUME ["/data"]
EXPOSE 8100
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 CMD ["/zeod", "health"]
ENTRYPOINT ["/zeod"]
CMD ["serve", "-a", "0.0.0.0:8100", "-f", "/data/Data.fs", "-b", "/data/blobs"]
