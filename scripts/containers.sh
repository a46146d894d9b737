#!/usr/bin/env bash
# Provisions a local Docker Engine API for the container executor and its tests: Podman's compatible
# service (Debian's podman + runc) on a socket in the project's cache, plus the busybox test image
# built offline from the host's busybox-static, since no registry is assumed reachable.
#
#   bash scripts/containers.sh start   # install if needed (root + apt), start the service, build the image
#   bash scripts/containers.sh env     # prints: export DOCKER_HOST=unix://<abs>/.cache/containers/podman.sock
#   bash scripts/containers.sh stop    # stops the service this script started (quiet when none)
#   bash scripts/containers.sh status  # exit status 0 when a service answers on the socket
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache/containers"
socket="$cache/podman.sock"
pidfile="$cache/podman.pid"
logfile="$cache/podman.log"
conf="$cache/containers.conf"
image="arcnet/busybox:test"
busybox_bin="/bin/busybox"
# shellcheck source=scripts/lib/pidfile.sh
. "$root/scripts/lib/pidfile.sh"

die() {
  echo "containers.sh: $*" >&2
  exit 1
}

service_pid() {
  owned_pid "$pidfile" "system service --time=0 unix://$socket"
}

ping_socket() {
  [ -S "$socket" ] && curl -fsS --max-time 2 --unix-socket "$socket" http://d/_ping >/dev/null 2>&1
}

ensure_packages() {
  local missing=()
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  # The image holds this one file and nothing else, so it must be the static build (Debian's plain
  # busybox package installs a dynamically linked /bin/busybox in the same place).
  if [ ! -x "$busybox_bin" ] || ! busybox_is_static; then missing+=(busybox-static); fi
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "containers.sh: installing ${missing[*]} (apt-get)" >&2
    apt-get update -qq || die "apt-get update failed; cannot install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc busybox-static curl >/dev/null ||
      die "apt-get install failed for podman runc busybox-static curl"
  else
    die "missing ${missing[*]}; install them (Debian: apt-get install podman runc busybox-static curl) or run as root with apt-get"
  fi
}

busybox_is_static() {
  if command -v dpkg-query >/dev/null 2>&1; then
    [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" = "install ok installed" ]
  else
    # Not Debian: trust what is there; a dynamic build shows up as a failing image smoke test.
    true
  fi
}

write_conf() {
  mkdir -p "$cache"
  # default_ulimits: as root Podman raises RLIMIT_NOFILE to 1048576, above the hard limit of a sandboxed
  # host, and runc then fails every start with "error setting rlimit type 7: operation not permitted".
  # cgroupfs: there is no systemd to delegate cgroups to.
  cat >"$conf.tmp" <<'EOF'
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
EOF
  mv "$conf.tmp" "$conf"
}

start_service() {
  if ping_socket; then
    return 0
  fi
  local launched=""
  if service_pid >/dev/null; then
    # Ours, but not answering yet (still starting): wait for it below rather than starting a second one.
    :
  else
    rm -f "$socket" "$pidfile"
    # From the cache dir: conmon (2.1.6) drops an "oom" marker file into its working directory, which it
    # inherits from the service; in the project root that would be a stray file in the checkout.
    (
      cd "$cache"
      CONTAINERS_CONF="$conf" nohup podman --runtime runc system service --time=0 "unix://$socket" \
        >"$logfile" 2>&1 </dev/null &
      echo $! >"$pidfile"
    )
    launched="$(cat "$pidfile")"
  fi
  local deadline=$((SECONDS + 30))
  until ping_socket; do
    # A process just launched is checked by pid alone: until nohup has exec'd podman its command line
    # is still bash's, and on a busy machine (right after apt installed podman) that lasts long enough
    # to be taken for an exit.
    if { [ -n "$launched" ] && ! kill -0 "$launched" 2>/dev/null; } || { [ -z "$launched" ] && ! service_pid >/dev/null; }; then
      echo "containers.sh: podman system service exited; last lines of $logfile:" >&2
      tail -n 20 "$logfile" >&2 || true
      rm -f "$pidfile"
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "containers.sh: no answer on $socket after 30 s; last lines of $logfile:" >&2
      tail -n 20 "$logfile" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

build_image() {
  if CONTAINERS_CONF="$conf" podman image exists "$image"; then
    return 0
  fi
  work="$(mktemp -d -t arcnet-busybox-XXXXXX)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp"
  cp "$busybox_bin" "$work/rootfs/bin/busybox"
  local applet
  for applet in $("$busybox_bin" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$work/rootfs/bin/$applet"
  done
  chmod 1777 "$work/rootfs/tmp"
  tar -C "$work/rootfs" --numeric-owner --owner=0 --group=0 -cf "$work/rootfs.tar" .
  CONTAINERS_CONF="$conf" podman import --quiet \
    --change 'CMD ["/bin/sh"]' \
    --change 'ENV PATH=/bin' \
    "$work/rootfs.tar" "$image" >/dev/null
  # One run through the service proves the image (a dynamically linked busybox would fail here) and the
  # engine together, so a broken setup fails now with a reason rather than later as a test failure.
  local got
  if ! got="$(run_smoke)" || [ "${got:0:16}" != "5891b5b522d5df08" ]; then
    CONTAINERS_CONF="$conf" podman rmi -f "$image" >/dev/null 2>&1 || true
    die "the freshly built $image does not run: $got"
  fi
}

run_smoke() {
  CONTAINERS_CONF="$conf" podman --url "unix://$socket" run --rm --network none "$image" sh -c 'echo hello | sha256sum' 2>&1
}

cmd_start() {
  ensure_packages
  write_conf
  start_service
  build_image
  echo "export DOCKER_HOST=unix://$socket"
}

cmd_env() {
  echo "export DOCKER_HOST=unix://$socket"
}

cmd_stop() {
  local pid
  if pid="$(service_pid)"; then
    stop_pid "$pid" 10 "containers.sh: podman service"
    rm -f "$socket"
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) cmd_env ;;
  status) ping_socket ;;
  *)
    echo "usage: bash scripts/containers.sh start|stop|env|status" >&2
    exit 2
    ;;
esac
