#!/usr/bin/env bash
# Provisions the headless browser the console's browser tests and `npm run bench` drive: Debian's
# chromium package (playwright-core's own browser download cannot reach its CDN from these machines).
#
#   bash scripts/chromium.sh ensure   # install if missing (root + apt-get), prove it renders a page headless
#   eval "$(bash scripts/chromium.sh ensure)" exports ARCNET_CHROMIUM (the last line it prints)
#   bash scripts/chromium.sh path     # prints the executable; fails when there is none
#   bash scripts/chromium.sh status   # exit status 0 when the executable is there and renders a page
#
# ARCNET_CHROMIUM, when set, names the executable to use instead of /usr/bin/chromium.
set -euo pipefail

executable="${ARCNET_CHROMIUM:-/usr/bin/chromium}"

die() {
  echo "chromium.sh: $*" >&2
  exit 1
}

note() {
  echo "chromium.sh: $*" >&2
}

install_package() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "no executable at $executable; install it (Debian: apt-get install chromium) or run as root with apt-get"
  fi
  note "installing chromium (apt-get)"
  # Try the lists already on the machine first: an update is slow, and only needed when they are missing
  # or stale (the install then fails to find or fetch the package).
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
    note "install failed with the current package lists; running apt-get update"
    apt-get update -qq || die "apt-get update failed; cannot install chromium"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
      die "apt-get install failed for chromium"
  fi
  [ -x "$executable" ] || die "apt-get installed chromium but $executable is still missing"
}

# Renders a page headless with the flags the tests use. Without the background-networking flags Chromium
# spends its start trying to reach Google's hosts, which this machine's closed network refuses.
smoke() {
  local profile out
  profile="$(mktemp -d -t arcnet-chromium-XXXXXX)"
  out="$(timeout 60 "$executable" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --dump-dom 'data:text/html,<p id="arcnet">rendered</p>' 2>&1)" || true
  rm -rf "$profile"
  case "$out" in
    *'<p id="arcnet">rendered</p>'*) return 0 ;;
    *)
      note "$executable did not render a page headless; it printed:"
      printf '%s\n' "$out" | tail -n 20 >&2
      return 1
      ;;
  esac
}

cmd_ensure() {
  [ -x "$executable" ] || install_package
  smoke || die "$executable is installed but does not run headless"
  note "$("$executable" --version 2>/dev/null | head -n 1) at $executable"
  echo "export ARCNET_CHROMIUM=$executable"
}

cmd_path() {
  [ -x "$executable" ] || die "no executable at $executable"
  echo "$executable"
}

case "${1:-}" in
  ensure) cmd_ensure ;;
  path) cmd_path ;;
  status) [ -x "$executable" ] && smoke 2>/dev/null ;;
  *)
    echo "usage: bash scripts/chromium.sh ensure|path|status" >&2
    exit 2
    ;;
esac
