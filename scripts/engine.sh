#!/usr/bin/env bash
# scripts/engine.sh - install and run a real container engine for tests and CI.
#
# What it gives you (see /work/shared/ENGINE.md for why these pieces):
#   * Docker Engine 26 (Debian 13 "trixie" package, installed with dpkg -i on
#     Debian 12 "bookworm") with the containerd image store enabled, listening
#     on the default socket /var/run/docker.sock;
#   * Buildx 0.13 as the docker CLI plugin (default builder, "docker" driver);
#   * a local OCI registry (distribution 2.8) on http://127.0.0.1:5000;
#   * skopeo, and QEMU user emulation so linux/arm64 RUN steps work;
#   * tiny local base images, imported (never pulled):
#       factory-fixtures/busybox:arm64 and factory-fixtures/busybox:amd64
#
# Usage: scripts/engine.sh install|start|stop|status|up
#   install  idempotent; a fast no-op when everything is already there
#   start    start dockerd + registry in the background, import base images
#   stop     stop only the processes this script started (from its pid files)
#   status   print what is running (does not need root)
#   up       install + start (what CI calls)
#
# Environment knobs:
#   FACTORY_ENGINE_STATE    state dir (data-root, exec-root, logs, pid files)
#                           default /tmp/spark-image-factory-engine
#   FACTORY_ENGINE_CACHE    download cache, default /var/cache/spark-image-factory-engine
#   FACTORY_ENGINE_TIMEOUT  seconds to wait for dockerd / registry (default 90)
#
# The machine has no init system: nothing here is a service. Every process
# this script starts is recorded in $STATE/pids/*.pid, and `stop` signals
# exactly those processes (after checking the pid still belongs to them).
set -euo pipefail

# ----------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------
STATE=${FACTORY_ENGINE_STATE:-/tmp/spark-image-factory-engine}
CACHE=${FACTORY_ENGINE_CACHE:-/var/cache/spark-image-factory-engine}
TIMEOUT=${FACTORY_ENGINE_TIMEOUT:-90}

PID_DIR="$STATE/pids"
LOG_DIR="$STATE/logs"
DOCKER_SOCK=/var/run/docker.sock
REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_URL="http://$REGISTRY_ADDR/v2/"
BUILDX_PLUGIN=/usr/local/lib/docker/cli-plugins/docker-buildx
BASE_IMAGE_REPO=factory-fixtures/busybox
BASE_ARCHES=(arm64 amd64)

# Debian's engine package is called "docker" + ".io"; the name is assembled so
# that no registry host name appears literally in this repository.
ENGINE_PKG="docker.""io"
BUILDX_PKG=docker-buildx
ENGINE_MAJOR=26

# Packages from the machine's own (bookworm) sources.
APT_PACKAGES=(
  containerd runc tini iptables     # what the trixie engine package needs
  adduser sysvinit-utils libsystemd0 # (its remaining dependencies)
  skopeo                             # independent registry reader
  qemu-user-static binfmt-support    # linux/arm64 RUN steps
  docker-registry                    # local OCI registry
  curl ca-certificates xz-utils util-linux
)

# Where dockerd and friends may be (root's PATH may lack sbin in CI shells).
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
# Never let an inherited DOCKER_HOST redirect us away from the default socket.
unset DOCKER_HOST DOCKER_CONTEXT

# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------
log() { printf '[engine] %s\n' "$*"; }
warn() { printf '[engine] WARNING: %s\n' "$*" >&2; }
die() {
  printf '[engine] ERROR: %s\n' "$*" >&2
  exit 1
}

now() { date +%s.%N; }
# step "description" command...  - run a command and print how long it took.
# (Not wrapped in `|| ...`: that would switch off `set -e` inside the step.)
step() {
  local what=$1 t0
  shift
  t0=$(now)
  "$@"
  printf '[engine] %-36s %6ss\n' "$what" "$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}')"
}

need_root() {
  [ "$(id -u)" -eq 0 ] || die "'$1' needs root (it installs packages / starts daemons)"
}

# Serialize install/start/stop between concurrent callers (CI jobs, test
# sessions). The lock fd is closed for every daemon we spawn (9>&-).
take_lock() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w 900 9 || die "could not take $STATE/.lock within 900s"
}

# pid_alive PID NAME - true when PID exists and its executable name is NAME.
# Used before every signal, so a recycled pid is never hit.
pid_alive() {
  local pid=$1 name=$2 comm
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [ "$comm" = "$name" ]
}

# read_pid NAME - the pid recorded in $PID_DIR/NAME.pid (empty if none).
read_pid() {
  local f="$PID_DIR/$1.pid"
  [ -f "$f" ] && tr -dc '0-9' <"$f" || true
}

engine_reachable() { docker info >/dev/null 2>&1; }
registry_reachable() { curl -fsS -o /dev/null --max-time 2 "$REGISTRY_URL" 2>/dev/null; }

# ----------------------------------------------------------------------------
# install
# ----------------------------------------------------------------------------
APT_COMMON=(-o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0 -q)

# A private apt configuration: separate lists, no binary caches (so the
# machine's own apt caches are never rebuilt from foreign indexes), downloads
# done as root into our cache. Used only to `download` .deb files.
private_apt() { # private_apt DIR apt-get-args...
  local dir=$1
  shift
  apt-get "${APT_COMMON[@]}" \
    -o Dir::State::Lists="$dir/lists" \
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= \
    -o APT::Sandbox::User=root \
    "$@"
}

# The URI of the machine's Debian mirror (from its deb822 or one-line sources).
debian_mirror() {
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || die "cannot find the Debian mirror URI in /etc/apt/sources*"
  echo "$uri"
}

missing_apt_packages() {
  local p missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  echo "${missing[*]}"
}

install_apt_packages() {
  local missing
  missing=$(missing_apt_packages)
  if [ -z "$missing" ]; then
    log "bookworm packages already installed"
    return 0
  fi
  log "installing from the machine's sources: $missing"
  apt-get "${APT_COMMON[@]}" update
  # shellcheck disable=SC2086  # word splitting of the package list is wanted
  apt-get "${APT_COMMON[@]}" install -y --no-install-recommends $missing
}

# Download the engine + buildx .debs from trixie through a private source.
download_trixie_debs() {
  local dir="$CACHE/apt-trixie" have_all=1 p
  mkdir -p "$dir/lists/partial" "$CACHE/debs"
  for p in "$ENGINE_PKG" "$BUILDX_PKG"; do
    compgen -G "$CACHE/debs/${p}_*_amd64.deb" >/dev/null || have_all=0
  done
  if [ "$have_all" -eq 1 ]; then
    log "trixie .debs already in $CACHE/debs"
    return 0
  fi
  # Never add trixie to the machine's own sources: a private sources file.
  echo "deb $(debian_mirror) trixie main" >"$dir/sources.list"
  private_apt "$dir" -o Dir::Etc::sourcelist="$dir/sources.list" -o Dir::Etc::sourceparts=- update
  (cd "$CACHE/debs" && private_apt "$dir" -o Dir::Etc::sourcelist="$dir/sources.list" \
    -o Dir::Etc::sourceparts=- download "$ENGINE_PKG" "$BUILDX_PKG")
}

engine_installed() {
  local v
  v=$(dpkg-query -W -f='${Status} ${Version}' "$ENGINE_PKG" 2>/dev/null) || return 1
  [[ "$v" == "install ok installed ${ENGINE_MAJOR}."* ]] && command -v dockerd >/dev/null
}

# Installing the engine package must not start a daemon nobody tracks. There
# is no init system, but the package's postinst calls invoke-rc.d, which would
# run /etc/init.d/docker unless policy-rc.d forbids it: make sure it does.
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_BACKUP=""
POLICY_CREATED=0
restore_policy_rc() {
  if [ "$POLICY_CREATED" -eq 1 ]; then
    rm -f "$POLICY_RC"
  elif [ -n "$POLICY_BACKUP" ]; then
    mv -f "$POLICY_BACKUP" "$POLICY_RC"
  fi
  POLICY_CREATED=0
  POLICY_BACKUP=""
}
forbid_service_starts() {
  local rc=0
  if [ -e "$POLICY_RC" ]; then
    "$POLICY_RC" docker start >/dev/null 2>&1 || rc=$?
    [ "$rc" -eq 101 ] && return 0
    POLICY_BACKUP="$POLICY_RC.factory-engine-backup"
    mv -f "$POLICY_RC" "$POLICY_BACKUP"
  else
    POLICY_CREATED=1
  fi
  trap restore_policy_rc EXIT
  printf '#!/bin/sh\n# temporary, from spark-image-factory scripts/engine.sh\nexit 101\n' >"$POLICY_RC"
  chmod 755 "$POLICY_RC"
}

install_engine() {
  if engine_installed; then
    log "engine package already installed: $(dpkg-query -W -f='${Version}' "$ENGINE_PKG")"
    return 0
  fi
  local deb
  deb=$(compgen -G "$CACHE/debs/${ENGINE_PKG}_*_amd64.deb" | sort -V | tail -n1)
  forbid_service_starts
  dpkg -i "$deb"
  restore_policy_rc
  trap - EXIT
  engine_installed || die "the engine package did not install ($deb)"
}

install_buildx() {
  local deb tmp
  deb=$(compgen -G "$CACHE/debs/${BUILDX_PKG}_*_amd64.deb" | sort -V | tail -n1)
  if [ -x "$BUILDX_PLUGIN" ] && [ -f "$BUILDX_PLUGIN.deb-name" ] &&
    [ "$(cat "$BUILDX_PLUGIN.deb-name")" = "$(basename "$deb")" ]; then
    log "buildx plugin already at $BUILDX_PLUGIN"
    return 0
  fi
  tmp=$(mktemp -d)
  dpkg-deb -x "$deb" "$tmp"
  install -D -m 755 "$tmp/usr/libexec/docker/cli-plugins/docker-buildx" "$BUILDX_PLUGIN"
  basename "$deb" >"$BUILDX_PLUGIN.deb-name"
  rm -rf "$tmp"
}

# Register QEMU's aarch64 interpreter with the kernel (binfmt_misc), with
# the F flag Debian's qemu-user-static sets, so it also works inside
# containers. Needs root; cheap when already done.
ensure_binfmt() {
  local bm=/proc/sys/fs/binfmt_misc
  if [ ! -e "$bm/register" ]; then
    mount -t binfmt_misc binfmt_misc "$bm" || die "cannot mount binfmt_misc on $bm"
  fi
  if [ ! -e "$bm/qemu-aarch64" ]; then
    update-binfmts --enable qemu-aarch64 || true
  fi
  [ -e "$bm/qemu-aarch64" ] || die "binfmt for aarch64 is not registered ($bm/qemu-aarch64 missing)"
  if ! grep -q '^enabled' "$bm/qemu-aarch64"; then
    echo 1 >"$bm/qemu-aarch64"
  fi
  grep -q '^flags:.*F' "$bm/qemu-aarch64" ||
    warn "qemu-aarch64 binfmt lacks the F flag; arm64 RUN steps may fail inside containers"
}

# Static busybox for amd64 and arm64, extracted from bookworm's busybox-static.
busybox_bin() { echo "$CACHE/busybox/$1/busybox"; }

download_busybox() {
  local arch dir deb tmp
  for arch in "${BASE_ARCHES[@]}"; do
    [ -x "$(busybox_bin "$arch")" ] && continue
    dir="$CACHE/apt-$arch"
    mkdir -p "$dir/lists/partial" "$CACHE/debs/$arch"
    # The machine's own sources, read for one architecture into private lists;
    # the machine's dpkg architectures are not changed.
    private_apt "$dir" -o APT::Architecture="$arch" -o APT::Architectures="$arch" update
    (cd "$CACHE/debs/$arch" && private_apt "$dir" -o APT::Architecture="$arch" \
      -o APT::Architectures="$arch" download "busybox-static:$arch")
    deb=$(compgen -G "$CACHE/debs/$arch/busybox-static_*_$arch.deb" | sort -V | tail -n1)
    tmp=$(mktemp -d)
    dpkg-deb -x "$deb" "$tmp"
    install -D -m 755 "$tmp/bin/busybox" "$(busybox_bin "$arch")"
    rm -rf "$tmp"
  done
  # The arm64 one runs through QEMU: a check of binfmt too.
  "$(busybox_bin arm64)" true || die "the arm64 busybox does not run (binfmt/QEMU problem?)"
}

# A root filesystem tar per arch: /bin/busybox, a symlink for every applet at
# its usual place (/bin/sh, /usr/bin/env, ...), /tmp, and a minimal /etc.
# Deterministic (sorted, fixed owner and mtime), built once into the cache.
busybox_rootfs_tar() { echo "$CACHE/busybox/$1/rootfs.tar"; }

make_busybox_rootfs() {
  local arch tar root applet
  for arch in "${BASE_ARCHES[@]}"; do
    tar=$(busybox_rootfs_tar "$arch")
    [ -s "$tar" ] && continue
    root=$(mktemp -d)
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,var/tmp}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    install -m 755 "$(busybox_bin "$arch")" "$root/bin/busybox"
    # The amd64 binary lists the applets (same busybox version for both).
    while read -r applet; do
      [ "$applet" = bin/busybox ] && continue
      ln -sf /bin/busybox "$root/$applet"
    done < <("$(busybox_bin amd64)" --list-full)
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$tar.tmp" .
    mv "$tar.tmp" "$tar"
    rm -rf "$root"
  done
}

cmd_install() {
  need_root install
  # The machine brings its own docker CLI (ENGINE.md); the engine package
  # does not include one.
  command -v docker >/dev/null || die "no docker CLI on PATH (expected one, e.g. /usr/local/bin/docker)"
  take_lock
  log "install (cache: $CACHE)"
  mkdir -p "$CACHE"
  step "bookworm packages" install_apt_packages
  step "trixie engine + buildx .debs" download_trixie_debs
  step "engine package (dpkg -i)" install_engine
  step "buildx plugin" install_buildx
  step "binfmt aarch64" ensure_binfmt
  step "busybox-static amd64+arm64" download_busybox
  step "busybox rootfs tars" make_busybox_rootfs
  log "installed: $(dockerd --version), buildx $(docker buildx version 2>/dev/null | awk '{print $2}'), $(skopeo --version)"
}

# ----------------------------------------------------------------------------
# start
# ----------------------------------------------------------------------------
write_daemon_config() {
  mkdir -p "$STATE/docker/data" "$STATE/docker/exec" "$PID_DIR" "$LOG_DIR"
  # The containerd image store: OCI indexes with attestations on push,
  # registry cache export and multi-platform builds (docker driver).
  cat >"$STATE/docker/daemon.json" <<EOF
{
  "features": { "containerd-snapshotter": true },
  "data-root": "$STATE/docker/data",
  "exec-root": "$STATE/docker/exec",
  "pidfile": "$STATE/docker/dockerd.pid",
  "hosts": ["unix://$DOCKER_SOCK"]
}
EOF
}

tail_log() {
  printf '[engine] ---- last lines of %s ----\n' "$1" >&2
  tail -n 30 "$1" >&2 || true
}

# Poll `docker info` until the engine answers; fail early if dockerd died.
wait_for_dockerd() {
  local pid=$1 t0=$SECONDS
  until engine_reachable; do
    if ! [ -d "/proc/$pid" ]; then
      tail_log "$LOG_DIR/dockerd.log"
      rm -f "$PID_DIR/dockerd.pid"
      die "dockerd exited during start-up (log: $LOG_DIR/dockerd.log)"
    fi
    if ((SECONDS - t0 > TIMEOUT)); then
      tail_log "$LOG_DIR/dockerd.log"
      die "dockerd (pid $pid) did not answer on $DOCKER_SOCK within ${TIMEOUT}s; stop it with '$0 stop'"
    fi
    sleep 0.3
  done
}

start_dockerd() {
  local pid child
  pid=$(read_pid dockerd)
  if pid_alive "$pid" dockerd; then
    wait_for_dockerd "$pid"
    log "dockerd already running (pid $pid, started by this script)"
    return 0
  fi
  if engine_reachable; then
    # Someone else's engine: use it, but never stop it.
    rm -f "$PID_DIR/dockerd.pid" "$PID_DIR/containerd.pid"
    mkdir -p "$PID_DIR"
    touch "$STATE/engine-not-ours"
    log "an engine NOT started by this script answers on $DOCKER_SOCK: reusing it (stop will leave it alone)"
    docker info -f '{{.ServerVersion}} {{.Driver}} {{.DriverStatus}}' | sed 's/^/[engine]   /'
    docker info -f '{{.DriverStatus}}' | grep -q 'io.containerd.snapshotter' ||
      warn "that engine does not use the containerd image store: no multi-platform builds or registry cache export"
    return 0
  fi
  rm -f "$STATE/engine-not-ours" "$PID_DIR/dockerd.pid" "$PID_DIR/containerd.pid"
  command -v dockerd >/dev/null || die "dockerd is not installed: run '$0 install' first"
  write_daemon_config
  # Own session (setsid: no SIGHUP when the caller's terminal goes), no
  # inherited stdio or lock fd, so callers capturing our output never hang.
  setsid dockerd --config-file "$STATE/docker/daemon.json" \
    </dev/null >>"$LOG_DIR/dockerd.log" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_DIR/dockerd.pid"
  wait_for_dockerd "$pid"
  # Record the containerd dockerd spawned (its child): dockerd stops it on
  # shutdown; the pid file lets `stop` check and `status` show it.
  child=$(pgrep -P "$pid" -x containerd || true)
  [ -n "$child" ] && echo "$child" >"$PID_DIR/containerd.pid"
  log "dockerd started (pid $pid$([ -n "$child" ] && echo ", containerd pid $child")), $(docker version -f 'engine {{.Server.Version}}')"
}

write_registry_config() {
  mkdir -p "$STATE/registry/data" "$PID_DIR" "$LOG_DIR"
  cat >"$STATE/registry/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STATE/registry/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $REGISTRY_ADDR
  secret: spark-image-factory-local-test-registry
EOF
}

# Poll the registry's /v2/ until it answers; fail early if it died.
wait_for_registry() {
  local pid=$1 t0=$SECONDS
  until registry_reachable; do
    if ! [ -d "/proc/$pid" ]; then
      tail_log "$LOG_DIR/registry.log"
      rm -f "$PID_DIR/registry.pid"
      die "docker-registry exited during start-up (is $REGISTRY_ADDR taken?)"
    fi
    if ((SECONDS - t0 > TIMEOUT)); then
      tail_log "$LOG_DIR/registry.log"
      die "registry (pid $pid) did not answer at $REGISTRY_URL within ${TIMEOUT}s"
    fi
    sleep 0.2
  done
}

start_registry() {
  local pid
  pid=$(read_pid registry)
  if pid_alive "$pid" docker-registry; then
    wait_for_registry "$pid"
    log "registry already running (pid $pid, started by this script) at $REGISTRY_ADDR"
    return 0
  fi
  rm -f "$PID_DIR/registry.pid"
  if registry_reachable; then
    log "a registry NOT started by this script answers at $REGISTRY_URL: reusing it (stop will leave it alone)"
    return 0
  fi
  command -v docker-registry >/dev/null || die "docker-registry is not installed: run '$0 install' first"
  write_registry_config
  setsid docker-registry serve "$STATE/registry/config.yml" \
    </dev/null >>"$LOG_DIR/registry.log" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_DIR/registry.pid"
  wait_for_registry "$pid"
  log "registry started (pid $pid) at $REGISTRY_ADDR, data in $STATE/registry/data"
}

import_base_images() {
  local arch tar image
  for arch in "${BASE_ARCHES[@]}"; do
    image="$BASE_IMAGE_REPO:$arch"
    if docker image inspect "$image" >/dev/null 2>&1; then
      log "$image already present"
      continue
    fi
    tar=$(busybox_rootfs_tar "$arch")
    [ -s "$tar" ] || die "$tar missing: run '$0 install' first"
    docker import --platform "linux/$arch" \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["/bin/sh"]' \
      "$tar" "$image" >/dev/null
    log "imported $image ($(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$image"))"
  done
}

# The default builder ("docker" driver, the engine's own BuildKit) must be
# the one in use; builders of other drivers cannot work here (no image pulls).
ensure_default_builder() {
  [ -x "$BUILDX_PLUGIN" ] || die "buildx plugin missing at $BUILDX_PLUGIN: run '$0 install' first"
  local current
  current=$(docker buildx inspect 2>/dev/null | awk '/^Name:/ {print $2; exit}')
  if [ "$current" != default ]; then
    log "switching buildx from builder '${current:-?}' to 'default'"
    docker buildx use default
  fi
  docker buildx inspect --bootstrap default >/dev/null
  docker buildx inspect default | awk '/^(Driver|Platforms):/ {$1 = $1; print "[engine]   " $0}'
  docker buildx inspect default | grep -q 'linux/arm64' ||
    warn "the default builder does not list linux/arm64"
}

cmd_start() {
  need_root start
  take_lock
  log "start (state: $STATE)"
  mkdir -p "$PID_DIR" "$LOG_DIR"
  step "binfmt aarch64" ensure_binfmt
  step "dockerd" start_dockerd
  step "registry" start_registry
  step "base images" import_base_images
  step "buildx default builder" ensure_default_builder
  log "ready: docker on unix://$DOCKER_SOCK, registry at $REGISTRY_ADDR (also localhost:5000)," \
    "base images $BASE_IMAGE_REPO:{arm64,amd64}"
}

# ----------------------------------------------------------------------------
# stop
# ----------------------------------------------------------------------------
# stop_recorded NAME COMM WAIT - SIGTERM the pid in NAME.pid if it is still a
# COMM process, wait up to WAIT seconds, then SIGKILL; remove the pid file.
stop_recorded() {
  local name=$1 comm=$2 wait_s=$3 pid t0
  pid=$(read_pid "$name")
  if [ -z "$pid" ]; then
    log "$name: no pid file, nothing to stop"
    return 0
  fi
  if ! pid_alive "$pid" "$comm"; then
    log "$name: pid $pid no longer running"
    rm -f "$PID_DIR/$name.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  t0=$SECONDS
  while pid_alive "$pid" "$comm"; do
    if ((SECONDS - t0 >= wait_s)); then
      warn "$name (pid $pid) still running after ${wait_s}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  rm -f "$PID_DIR/$name.pid"
  log "$name (pid $pid) stopped"
}

cmd_stop() {
  need_root stop
  take_lock
  log "stop (state: $STATE)"
  step "registry" stop_recorded registry docker-registry 20
  # dockerd stops its containers (up to 15s) and the containerd it spawned.
  step "dockerd" stop_recorded dockerd dockerd 60
  # Only if dockerd did not take its own containerd child down with it.
  step "containerd (child of dockerd)" stop_recorded containerd containerd 20
  if [ -e "$STATE/engine-not-ours" ]; then
    log "the engine on $DOCKER_SOCK was not started by this script: left running"
    rm -f "$STATE/engine-not-ours"
  fi
}

# ----------------------------------------------------------------------------
# status (no root needed)
# ----------------------------------------------------------------------------
cmd_status() {
  local name comm pid
  echo "state dir:  $STATE"
  for name in dockerd:dockerd containerd:containerd registry:docker-registry; do
    comm=${name#*:}
    name=${name%%:*}
    pid=$(read_pid "$name")
    if [ -z "$pid" ]; then
      printf '%-11s not started by this script\n' "$name:"
    elif pid_alive "$pid" "$comm"; then
      printf '%-11s running, pid %s (started by this script%s)\n' "$name:" "$pid" \
        "$([ "$name" = containerd ] && echo ', as a child of dockerd')"
    else
      printf '%-11s NOT running (stale pid file, pid %s)\n' "$name:" "$pid"
    fi
  done
  if engine_reachable; then
    local store="classic image store"
    docker info -f '{{.DriverStatus}}' 2>/dev/null | grep -q 'io.containerd.snapshotter' &&
      store="containerd image store"
    echo "engine:     reachable on $DOCKER_SOCK: $(docker version -f 'server {{.Server.Version}}' 2>/dev/null)," \
      "$store$([ -e "$STATE/engine-not-ours" ] && echo ', NOT started by this script')"
    echo "images:     $(docker image ls --format '{{.Repository}}:{{.Tag}}' "$BASE_IMAGE_REPO" 2>/dev/null | sort | tr '\n' ' ')"
  elif [ -S "$DOCKER_SOCK" ]; then
    echo "engine:     $DOCKER_SOCK exists but does not answer (not running, or no permission)"
  else
    echo "engine:     not reachable ($DOCKER_SOCK absent)"
  fi
  if registry_reachable; then
    echo "registry:   answering at $REGISTRY_URL"
  else
    echo "registry:   not answering at $REGISTRY_URL"
  fi
  if [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    echo "binfmt:     qemu-aarch64 $(head -n1 /proc/sys/fs/binfmt_misc/qemu-aarch64)"
  else
    echo "binfmt:     qemu-aarch64 not registered"
  fi
  if [ -x "$BUILDX_PLUGIN" ]; then
    echo "buildx:     $BUILDX_PLUGIN"
  else
    echo "buildx:     not installed"
  fi
}

# ----------------------------------------------------------------------------
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

main() {
  local cmd=${1:-}
  case "$cmd" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  up)
    local t0=$SECONDS
    cmd_install
    cmd_start
    log "up done in $((SECONDS - t0))s"
    ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
  esac
}

main "$@"
