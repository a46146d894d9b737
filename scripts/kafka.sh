#!/usr/bin/env bash
# A one-node KRaft Kafka (broker and controller in one JVM) for development and CI. Its jars come
# from Maven Central through scripts/kafka/pom.xml, since that is the one download site assumed
# reachable; they are cached in .cache/kafka/libs, so only the first start needs the network.
#
#   bash scripts/kafka.sh start   # fetch jars if needed, format storage once, start, wait for a metadata answer
#   bash scripts/kafka.sh env     # prints: export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092
#   bash scripts/kafka.sh stop    # stops the broker this script started (quiet when none)
#   bash scripts/kafka.sh status  # exit status 0 when a broker answers a metadata request on the port
#   bash scripts/kafka.sh clean   # stop, then drop the broker's data (every topic and offset)
#
# ARCNET_KAFKA_PORT (default 19092; the controller takes the next port) and ARCNET_KAFKA_INSTANCE
# run a second, separate broker with its own data beside the first, e.g. for a test that restarts
# its broker without disturbing the suites sharing the default one.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
pom="$root/scripts/kafka/pom.xml"
cache="$root/.cache/kafka"
libs="$cache/libs"
instance="${ARCNET_KAFKA_INSTANCE:-}"
state="$cache${instance:+/instances/$instance}"
data="$state/data"
conf="$state/server.properties"
log4j_conf="$state/log4j2.properties"
logfile="$state/broker.log"
pidfile="$state/broker.pid"
host="127.0.0.1"
port="${ARCNET_KAFKA_PORT:-19092}"
controller_port=$((port + 1))
start_timeout_s=60
stop_timeout_s=30
dependency_plugin="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
java=""
# shellcheck source=scripts/lib/pidfile.sh
. "$root/scripts/lib/pidfile.sh"

die() {
  echo "kafka.sh: $*" >&2
  exit 1
}

java_bin() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    echo "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    command -v java
  else
    die "no java on PATH (Kafka 4 brokers need Java 17 or newer; Debian: apt-get install openjdk-17-jre-headless)"
  fi
}

broker_pid() {
  owned_pid "$pidfile" "kafka.Kafka $conf"
}

# One Metadata v4 request (all topics) over bash's /dev/tcp; ready means the answer carries our
# correlation id and lists at least one broker. Listening alone is not enough: a KRaft broker accepts
# connections before it has registered with the controller, and clients then see no brokers.
# v4 because Kafka 4 dropped Metadata v0-v3 (KIP-896); it is still non-flexible, so the bytes are fixed.
probe_metadata() {
  local out
  out="$(timeout 3 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "\x00\x00\x00\x17\x00\x03\x00\x04\x00\x00\x00\x01\x00\x08kafka.sh\xff\xff\xff\xff\x00" >&3
    head -c 16 <&3 | od -An -tu1 -v
  ' probe "$host" "$port" 2>/dev/null)" || return 1
  local -a b
  read -r -a b <<<"$out"
  # size(4) correlation_id(4) throttle_time_ms(4) brokers.length(4)
  [ "${#b[@]}" -eq 16 ] || return 1
  [ "${b[4]}${b[5]}${b[6]}${b[7]}" = "0001" ] || return 1
  [ $(((b[12] << 24) | (b[13] << 16) | (b[14] << 8) | b[15])) -ge 1 ]
}

# Jars are keyed by the pom's content, so a version bump in the pom refetches and nothing else does.
ensure_libs() {
  local stamp="$libs/.pom.sha256" want
  want="$(sha256sum "$pom" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "the broker's jars are not cached in $libs and mvn is not on PATH (Debian: apt-get install maven)"
  echo "kafka.sh: fetching the broker's jars from Maven Central into $libs" >&2
  local tmp="$cache/libs.tmp"
  rm -rf "$tmp"
  mkdir -p "$cache"
  if ! mvn -B --no-transfer-progress -f "$pom" "$dependency_plugin:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$cache/mvn.log" 2>&1; then
    rm -rf "$tmp"
    tail -n 30 "$cache/mvn.log" >&2 || true
    die "mvn could not fetch the jars listed in $pom (is Maven Central reachable?); full output in $cache/mvn.log"
  fi
  echo "$want" >"$tmp/.pom.sha256"
  rm -rf "$libs"
  mv "$tmp" "$libs"
}

write_config() {
  mkdir -p "$state"
  # Internal topics get replication factor 1 (one node) and few partitions: their default 50 each
  # makes the first group join and the first transaction wait while a hundred partitions are created.
  cat >"$conf.tmp" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$host:$controller_port
listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$controller_port
advertised.listeners=PLAINTEXT://$host:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  mv "$conf.tmp" "$conf"
  cat >"$log4j_conf.tmp" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
# One line per partition per topic created by every test run otherwise.
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF
  mv "$log4j_conf.tmp" "$log4j_conf"
}

cluster_id() {
  local file="$state/cluster.id"
  if [ ! -s "$file" ]; then
    local id
    # A Kafka Uuid in its text form: 16 random bytes, URL-safe base64 without padding; never a leading
    # '-', which the tools would read as an option (Kafka's own generator avoids it for the same reason).
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    while [ "${id:0:1}" = "-" ]; do id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"; done
    echo "$id" >"$file"
  fi
  cat "$file"
}

format_storage() {
  [ -f "$data/meta.properties" ] && return 0
  mkdir -p "$data"
  "$java" -Xmx256m -cp "$libs/*" -Dlog4j2.configurationFile="$log4j_conf" \
    kafka.tools.StorageTool format --cluster-id "$(cluster_id)" --config "$conf" --ignore-formatted >"$state/format.log" 2>&1 ||
    {
      cat "$state/format.log" >&2
      die "formatting $data failed"
    }
}

launch() {
  (
    cd "$state"
    nohup "$java" -Xms128m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$log4j_conf" -Dkafka.logs.dir="$state" \
      -cp "$libs/*" kafka.Kafka "$conf" >"$logfile" 2>&1 </dev/null &
    echo $! >"$pidfile"
  )
}

# The first errors say why (a port in use, a bad config); the last lines say where it stopped.
show_log() {
  grep -m 5 -E '^\[[^]]*\] (ERROR|FATAL) |Exception: ' "$logfile" >&2 || true
  echo "kafka.sh: ...last lines:" >&2
  tail -n 15 "$logfile" >&2 || true
}

cmd_start() {
  if probe_metadata; then
    cmd_env
    return 0
  fi
  local launched=""
  if ! broker_pid >/dev/null; then
    # A plain assignment, so a missing java stops the script here with java_bin's message.
    java="$(java_bin)"
    ensure_libs
    write_config
    format_storage
    rm -f "$pidfile"
    launch
    launched="$(cat "$pidfile")"
  fi
  # Ours but not answering yet (still starting), or just launched: wait either way. A process just
  # launched is checked by pid alone: until nohup has exec'd java its command line is still bash's.
  local deadline=$((SECONDS + start_timeout_s))
  until probe_metadata; do
    if { [ -n "$launched" ] && ! kill -0 "$launched" 2>/dev/null; } || { [ -z "$launched" ] && ! broker_pid >/dev/null; }; then
      echo "kafka.sh: the broker exited; from $logfile:" >&2
      show_log
      rm -f "$pidfile"
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "kafka.sh: no metadata answer on $host:$port after $start_timeout_s s (broker left running, pid $(cat "$pidfile")); from $logfile:" >&2
      show_log
      exit 1
    fi
    sleep 0.2
  done
  cmd_env
}

cmd_env() {
  echo "export KAFKA_BOOTSTRAP_SERVERS=$host:$port"
}

cmd_stop() {
  local pid
  if pid="$(broker_pid)"; then
    stop_pid "$pid" "$stop_timeout_s" "kafka.sh: broker"
  fi
  rm -f "$pidfile"
}

cmd_clean() {
  cmd_stop
  rm -rf "$data" "$state/cluster.id"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) cmd_env ;;
  status) probe_metadata ;;
  clean) cmd_clean ;;
  *)
    echo "usage: bash scripts/kafka.sh start|stop|status|env|clean" >&2
    exit 2
    ;;
esac
