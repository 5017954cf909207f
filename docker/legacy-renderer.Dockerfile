# The legacy renderer: Zope 2.13 on Python 2.7 with a ZEO 4 client, for the
# old sites that zeod serves beside modern ones (issue 9). `zeod init` is
# PID 1: it renders a Zope 2 zope.conf from the environment (ZEO_ADDRESS,
# ZEO_STORAGE, ZEO_CLIENT_CACHE_SIZE, LISTEN_PORT, ... as in the modern
# renderer), waits for ZEO, then supervises ZServer (`runzope`).
# Build context: the repository root.
#   docker build -f docker/legacy-renderer.Dockerfile -t zeod-legacy-renderer .
# Without a registry: --build-arg LEGACY_BASE=local/debian:bullseye
#                     --build-arg RUST_IMAGE=local/rust:1.95.0-bookworm
ARG RUST_IMAGE=rust:1.95-bookworm
# Python 2.7 was last packaged by Debian in bullseye.
ARG LEGACY_BASE=debian:bullseye-slim

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

FROM ${LEGACY_BASE} AS python2
RUN apt-get update \
 && apt-get install -y --no-install-recommends python2.7 \
 && rm -rf /var/lib/apt/lists/*

# Compilers and headers live in this stage only: most of Zope 2.13's
# distributions are sdists with C extensions and no Python 2 wheels.
FROM python2 AS pip
RUN apt-get update \
 && apt-get install -y --no-install-recommends python2.7-dev gcc libc6-dev curl \
 && rm -rf /var/lib/apt/lists/*
# pip for Python 2: the last release that runs on it, a sha256-pinned wheel
# from PyPI (bullseye packages no pip for Python 2).
ARG PIP_WHEEL_URL=https://files.pythonhosted.org/packages/27/79/8a850fe3496446ff0d584327ae44e7500daf6764ca1a382d2d02789accf7/pip-20.3.4-py2.py3-none-any.whl
ARG PIP_WHEEL_SHA256=217ae5161a0e08c0fb873858806e3478c9775caffce5168b50ec885e358c199d
RUN curl -fsSL -o /tmp/pip-20.3.4-py2.py3-none-any.whl "$PIP_WHEEL_URL" \
 && echo "$PIP_WHEEL_SHA256  /tmp/pip-20.3.4-py2.py3-none-any.whl" | sha256sum -c - \
 && python2.7 /tmp/pip-20.3.4-py2.py3-none-any.whl/pip install --no-cache-dir --no-index \
      /tmp/pip-20.3.4-py2.py3-none-any.whl \
 && rm /tmp/pip-20.3.4-py2.py3-none-any.whl

FROM pip AS build
# Everything into /usr/local (a Python image's layout: this image runs one
# program), every distribution pinned by version and sha256. The build
# tools (setuptools, wheel) are pinned too and installed first, and builds
# run without isolation, so nothing unpinned is ever fetched. pip's cache
# (downloads and built wheels) is a BuildKit cache mount: a rebuild compiles
# nothing it compiled before, and the cache is never part of the image.
COPY docker/legacy/build-requirements.txt docker/legacy/requirements.txt /usr/local/share/zeod/legacy/
RUN --mount=type=cache,id=zeod-pip27,target=/root/.cache/pip \
    cd /usr/local/share/zeod/legacy \
 && python2.7 -m pip install --disable-pip-version-check --no-warn-script-location \
      --require-hashes -r build-requirements.txt \
 && python2.7 -m pip install --disable-pip-version-check --no-warn-script-location \
      --require-hashes --no-build-isolation -r requirements.txt \
 && python2.7 -m pip check

FROM python2
COPY --from=build /usr/local/lib/python2.7 /usr/local/lib/python2.7
COPY --from=build /usr/local/bin /usr/local/bin
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# uid 500 like plone/plone-backend and the modern renderer, so volumes move
# between the images. /app is the instance home: etc/ is written by zeod
# init, Products/ holds ZeodLegacy (the root page and the health view),
# var/ and log/ are what Zope 2 expects there. /data is the client home: ZEO
# client cache, blob cache (0700, or ZODB warns "insecure mode setting"),
# Z2.pid and the lock file.
RUN groupadd --gid 500 zope \
 && useradd --uid 500 --gid 500 --home-dir /app --no-create-home --shell /usr/sbin/nologin zope \
 && mkdir -p /app/etc /app/var /app/log /app/import /app/Products /data/blobstorage /data/cache \
 && chown -R 500:500 /app /data \
 && chmod 0700 /data/blobstorage
COPY --from=zeod /zeod /usr/local/bin/zeod
COPY docker/legacy/templates/zope.conf /etc/zeod/templates/
COPY docker/legacy/Products /app/Products
COPY docker/legacy/bootstrap.py docker/legacy/healthcheck.py /usr/local/share/zeod/
# The code is compiled once here, as root: the user cannot write it, and
# PYTHONDONTWRITEBYTECODE stops Python trying at run time.
RUN python2.7 -m compileall -q /app/Products /usr/local/share/zeod >/dev/null

USER 500:500
WORKDIR /app
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=4s --start-period=120s --retries=3 \
    CMD ["python2.7", "/usr/local/share/zeod/healthcheck.py"]
ENTRYPOINT ["/usr/local/bin/zeod", "init", "--templates", "/etc/zeod/templates", "--"]
CMD ["runzope", "-C", "/app/etc/zope.conf"]
