#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft: one JVM is both broker and controller) for development and CI.
#
#   bash scripts/kafka-local.sh start     fetch the broker jars if needed, format the store once, start, wait until it answers
#   bash scripts/kafka-local.sh stop      SIGTERM, wait, then SIGKILL
#   bash scripts/kafka-local.sh restart   stop + start; the data (topics, offsets) is kept
#   bash scripts/kafka-local.sh status    exit 0 when running, 3 when not
#   bash scripts/kafka-local.sh env       prints KAFKA_BROKERS=127.0.0.1:9092
#   bash scripts/kafka-local.sh clean     stop and delete the data (the jars stay)
#   bash scripts/kafka-local.sh fetch     only fetch the jars
#
# The broker jars come from Maven Central through Maven (scripts/kafka/pom.xml) into .kafka/libs (ignored by git);
# Maven's own cache (~/.m2) is reused. Needs Java 17+ and Maven; nothing is downloaded from anywhere else.
#
# Settings (environment):
#   KAFKA_VERSION          Kafka 4.x version to fetch (default 4.4.0)
#   KAFKA_PORT             client listener, 127.0.0.1 only (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener (default 9093)
#   KAFKA_HOME_DIR         working folder (default <repo>/.kafka): libs/, data/, server.properties, kafka.pid, kafka.log
#   KAFKA_LIBS_DIR         where the jars are (default $KAFKA_HOME_DIR/libs): a second broker can share them
#   KAFKA_HEAP_OPTS        JVM heap (default "-Xms256m -Xmx512m")
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 90)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KDIR="${KAFKA_HOME_DIR:-$ROOT/.kafka}"
LIBS="${KAFKA_LIBS_DIR:-$KDIR/libs}"
DATA="$KDIR/data"
CONFIG="$KDIR/server.properties"
LOG4J="$KDIR/log4j2.properties"
PIDFILE="$KDIR/kafka.pid"
LOGFILE="$KDIR/kafka.log"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
BROKERS="127.0.0.1:$KAFKA_PORT"

say() { echo "kafka-local: $*"; }
die() { echo "kafka-local: error: $*" >&2; exit 1; }

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then echo "$JAVA_HOME/bin/java"; else command -v java || die "java not found (Java 17+ needed)"; fi
}

check_java() {
  local j v
  j="$(java_bin)"
  v="$("$j" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2; exit}')"
  [[ -n "$v" ]] || die "could not read the Java version of $j"
  [[ "${v%%.*}" -ge 17 ]] || die "Kafka $KAFKA_VERSION needs Java 17+, $j is $v"
}

# --- fetch -------------------------------------------------------------------------------------------------
fetch() {
  local marker="$LIBS/.complete-$KAFKA_VERSION"
  if [[ -f "$marker" ]]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found (Maven is needed to fetch the broker jars)"
  say "fetching Kafka $KAFKA_VERSION jars from Maven Central into ${LIBS#"$ROOT"/} ..."
  local t0=$SECONDS tmp="$KDIR/libs.tmp.$$"
  mkdir -p "$KDIR"
  rm -rf "$tmp"
  if ! mvn -B -q -Dstyle.color=never -f "$ROOT/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KDIR/fetch.log" 2>&1; then
    tail -n 40 "$KDIR/fetch.log" >&2
    rm -rf "$tmp"
    die "Maven could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see $KDIR/fetch.log)"
  fi
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after the fetch"; }
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  touch "$LIBS/.complete-$KAFKA_VERSION"
  say "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $((SECONDS - t0))s"
}

# --- config ------------------------------------------------------------------------------------------------
write_config() {
  mkdir -p "$DATA"
  cat >"$CONFIG" <<EOF
# Written by scripts/kafka-local.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
# Single node: every internal topic has one replica.
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Topics are created explicitly (the app and the tests do it with the admin client), as in production.
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
# Small machine: few threads, small segments, short retention.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.segment.bytes=67108864
log.retention.hours=24
log.retention.check.interval.ms=60000
EOF
  cat >"$LOG4J" <<'EOF'
# Written by scripts/kafka-local.sh. Broker logs go to stdout, which the script sends to .kafka/kafka.log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
EOF
}

# A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'.
cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" == -* ]] || break
  done
  echo "$id"
}

format_if_needed() {
  local stamp="$DATA/.kafka-local-version"
  if [[ -f "$DATA/meta.properties" && -d "$DATA/__cluster_metadata-0" ]]; then
    if [[ -f "$stamp" && "$(cat "$stamp")" != "$KAFKA_VERSION" ]]; then
      say "data was written by Kafka $(cat "$stamp"), now $KAFKA_VERSION: wiping the local data"
      rm -rf "$DATA"
    else
      return 0
    fi
  fi
  rm -rf "$DATA"
  mkdir -p "$DATA"
  local id
  id="$(cluster_id)"
  "$(java_bin)" -Xmx256m -cp "$LIBS/*" -Dlog4j2.configurationFile="$LOG4J" kafka.tools.StorageTool \
    format -t "$id" -c "$CONFIG" >"$KDIR/format.log" 2>&1 || { cat "$KDIR/format.log" >&2; die "formatting $DATA failed"; }
  echo "$KAFKA_VERSION" >"$stamp"
  say "formatted ${DATA#"$ROOT"/} (cluster id $id)"
}

# --- process -----------------------------------------------------------------------------------------------
running_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid: it must be our broker.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Ready = the broker answers a real request: a kafkajs admin describeCluster + listTopics when kafkajs is
# installed (it is after npm ci); otherwise the log's "Kafka Server started" line and an open port.
probe() {
  if [[ -d "$ROOT/node_modules/kafkajs" ]] && command -v node >/dev/null; then
    (cd "$ROOT" && KAFKAJS_NO_PARTITIONER_WARNING=1 node -e '
      const { Kafka, logLevel } = require("kafkajs");
      const admin = new Kafka({ clientId: "kafka-local-probe", brokers: [process.argv[1]], logLevel: logLevel.NOTHING,
        connectionTimeout: 2000, requestTimeout: 5000, retry: { retries: 0 } }).admin();
      admin.connect().then(() => admin.describeCluster()).then(() => admin.listTopics())
        .then(() => admin.disconnect()).then(() => process.exit(0), () => process.exit(1));
      setTimeout(() => process.exit(1), 8000).unref();
    ' "$BROKERS") >/dev/null 2>&1
  else
    grep -q 'Kafka Server started' "$LOGFILE" 2>/dev/null && port_open "$KAFKA_PORT"
  fi
}

start() {
  local pid
  if pid="$(running_pid)"; then
    say "already running (pid $pid) on $BROKERS"
    return 0
  fi
  rm -f "$PIDFILE"
  if port_open "$KAFKA_PORT"; then die "port $KAFKA_PORT is taken by another process (set KAFKA_PORT)"; fi
  if port_open "$KAFKA_CONTROLLER_PORT"; then die "port $KAFKA_CONTROLLER_PORT is taken by another process (set KAFKA_CONTROLLER_PORT)"; fi
  check_java
  fetch
  write_config
  format_if_needed

  local t0 started
  t0="$(date +%s%N)"
  [[ -f "$LOGFILE" ]] && mv -f "$LOGFILE" "$LOGFILE.1"
  # setsid + nohup: the broker outlives this shell and its terminal; stdin from /dev/null, all output to the log.
  # shellcheck disable=SC2086
  setsid nohup "$(java_bin)" $HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$KDIR" \
    -cp "$LIBS/*" kafka.Kafka "$CONFIG" </dev/null >"$LOGFILE" 2>&1 &
  echo $! >"$PIDFILE"
  pid="$(cat "$PIDFILE")"
  say "starting Kafka $KAFKA_VERSION (pid $pid) on $BROKERS, log ${LOGFILE#"$ROOT"/}"

  local deadline=$((SECONDS + START_TIMEOUT))
  started=""
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "---- last lines of $LOGFILE ----" >&2; tail -n 60 "$LOGFILE" >&2
      rm -f "$PIDFILE"
      die "the broker exited during startup"
    fi
    if port_open "$KAFKA_PORT" && probe; then started=1; break; fi
    sleep 0.5
  done
  if [[ -z "$started" ]]; then
    echo "---- last lines of $LOGFILE ----" >&2; tail -n 60 "$LOGFILE" >&2
    stop >/dev/null 2>&1 || true
    die "the broker did not answer on $BROKERS within ${START_TIMEOUT}s"
  fi
  local ms=$((($(date +%s%N) - t0) / 1000000))
  say "ready on $BROKERS after $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PIDFILE"
    say "not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    say "still running ${STOP_TIMEOUT}s after SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PIDFILE"
  say "stopped (pid $pid)"
}

status() {
  local pid
  if pid="$(running_pid)"; then
    local rss
    rss="$(awk '/VmRSS/ {printf "%d MiB", $2 / 1024}' "/proc/$pid/status" 2>/dev/null || true)"
    say "running (pid $pid, Kafka $KAFKA_VERSION, $BROKERS, RSS ${rss:-?})"
    return 0
  fi
  say "not running"
  return 3
}

clean() {
  stop
  rm -rf "$DATA" "$CONFIG" "$LOG4J" "$LOGFILE" "$LOGFILE.1" "$KDIR/format.log"
  say "data removed (jars kept in ${LIBS#"$ROOT"/})"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  env) echo "KAFKA_BROKERS=$BROKERS" ;;
  fetch) check_java; fetch ;;
  clean) clean ;;
  *)
    echo "usage: bash scripts/kafka-local.sh start|stop|restart|status|env|fetch|clean" >&2
    exit 2
    ;;
esac
