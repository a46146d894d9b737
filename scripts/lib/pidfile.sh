# Sourced by the provisioning scripts: the background services they start are tracked by pid files.

# The pid file's process, if it is still the one started with `fragment` in its command line (pids
# get reused, so a bare pid is not proof). Prints the pid; fails when there is none.
owned_pid() {
  local pidfile="$1" fragment="$2" pid
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  [ -n "$pid" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "$fragment" || return 1
  echo "$pid"
}

# SIGTERM, then SIGKILL if it is still there after `timeout_s` seconds, saying so on stderr.
stop_pid() {
  local pid="$1" timeout_s="$2" label="$3"
  kill "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout_s))
  while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$label $pid still running after $timeout_s s; killing it" >&2
    kill -9 "$pid" 2>/dev/null || true
  fi
}
