# A Zope 5 renderer: a ZEO client of the storage node, served by waitress.
# `zeod init` is PID 1: it renders zope.conf and zope.ini from the
# environment (ZEO_ADDRESS, ZEO_READ_ONLY, LISTEN_PORT, ... as in
# plone/plone-backend), waits for ZEO, then supervises runwsgi.
# Build context: the repository root.
#   docker build -f docker/renderer.Dockerfile -t zeod-renderer .
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
 && apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY docker/renderer/requirements.txt /opt/zope/requirements.txt
# pip's download cache is a BuildKit cache mount: kept between builds,
# never part of the image.
RUN --mount=type=cache,id=zeod-pip,target=/root/.cache/pip \
    python3 -m venv /opt/zope \
 && /opt/zope/bin/pip install --disable-pip-version-check -r /opt/zope/requirements.txt \
 && /opt/zope/bin/pip check
# /app/lib/python is on sys.path so its Products/ extends the Products
# namespace: Zope 5 has no `products` directive any more. The venv keeps
# the bytecode pip compiled (Zope starts in seconds, not tens of seconds);
# nothing is compiled at run time into read-only places.
ENV PATH=/opt/zope/bin:$PATH \
    PYTHONPATH=/app/lib/python \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# uid 500 like plone/plone-backend, so volumes move between the images.
# /app is the instance home: etc/ is written by zeod init, lib/python/Products
# holds the add-ons (a volume shared by every renderer), var/ is scratch.
# /data is the client home: ZEO client cache and blob cache.
RUN groupadd --gid 500 zope \
 && useradd --uid 500 --gid 500 --home-dir /app --no-create-home --shell /usr/sbin/nologin zope \
 && mkdir -p /app/etc /app/var/cache /app/lib/python/Products /data/blobstorage /data/cache \
 && chown -R 500:500 /app /data
COPY --from=zeod /zeod /usr/local/bin/zeod
COPY docker/renderer/templates/zope.conf docker/renderer/templates/zope.ini /etc/zeod/templates/
# The demo portal: the shipped copy, and the same on the add-ons path so a
# new named volume mounted there starts with it (bootstrap.py keeps it
# current on an existing one).
COPY docker/renderer/Products /usr/local/share/zeod/Products
COPY --chown=500:500 docker/renderer/Products /app/lib/python/Products
COPY docker/renderer/bootstrap.py docker/renderer/healthcheck.py /usr/local/share/zeod/

USER 500:500
WORKDIR /app
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=4s --start-period=120s --retries=3 \
    CMD ["/opt/zope/bin/python", "/usr/local/share/zeod/healthcheck.py"]
ENTRYPOINT ["/usr/local/bin/zeod", "init", "--templates", "/etc/zeod/templates", "--"]
CMD ["runwsgi", "/app/etc/zope.ini"]
