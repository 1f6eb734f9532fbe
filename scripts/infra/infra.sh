#!/usr/bin/env bash
# Local infrastructure for tests and the demo, without Docker:
# one Apache Kafka 4.x KRaft node and an Apicurio schema registry (Confluent API), both on loopback.
#
#   infra.sh fetch    resolve the jars from Maven Central into ~/.cache/tanma-infra (once)
#   infra.sh start    fetch, format, start both, wait until they answer; writes $STATE/env
#                     (addresses, the TLS CA, SASL users and their passwords; `source` it)
#   infra.sh stop     stop what `start` started, by pid
#   infra.sh status   print the env file if both are up
#   infra.sh stop-kafka | start-kafka | restart-kafka
#                     stop / start again / both, the broker only, keeping its log dir (chaos runs)
#
# Everything lives in $TANMA_INFRA_DIR (default: <repo>/.infra). Processes are stopped by the pids
# recorded there, never by name.
#
# Ports: TANMA_KAFKA_PORT, TANMA_CONTROLLER_PORT, TANMA_KAFKA_TLS_PORT, TANMA_KAFKA_SASL_PORT,
# TANMA_REGISTRY_PORT, TANMA_REGISTRY_MGMT_PORT when set; every other port is a free loopback port
# chosen by `start` (so several copies run on one machine) and kept in $STATE/ports for
# stop-kafka / start-kafka / restart-kafka. Read the addresses from $STATE/env, never assume them.
#
# The broker listens on PLAINTEXT, SSL (no client authentication) and SASL_SSL (SCRAM-SHA-512 and
# PLAIN) with ACLs enforced; see server.properties.in and create_acls below.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
STATE="${TANMA_INFRA_DIR:-$repo/.infra}"
CACHE="${TANMA_INFRA_CACHE:-$HOME/.cache/tanma-infra}"
KAFKA_VERSION="4.1.1"
APICURIO_VERSION="3.3.3"
PORT_VARS=(KAFKA_PORT CONTROLLER_PORT KAFKA_TLS_PORT KAFKA_SASL_PORT REGISTRY_PORT REGISTRY_MGMT_PORT)
KAFKA_LIBS="$CACHE/kafka-$KAFKA_VERSION"
APICURIO_HOME="$CACHE/apicurio-$APICURIO_VERSION"
JAVA="${JAVA:-java}"

# Apicurio 3.3 is built for Java 21+; the broker runs on the machine's default Java (17+).
registry_java() {
  if [ -n "${REGISTRY_JAVA:-}" ]; then echo "$REGISTRY_JAVA"; return; fi
  local j v
  for j in "$JAVA" /usr/lib/jvm/*/bin/java; do
    [ -x "$(command -v "$j" 2>/dev/null)" ] || continue
    v=$("$j" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
    if [ "${v%%.*}" -ge 21 ] 2>/dev/null; then echo "$j"; return; fi
  done
  die "the schema registry (Apicurio $APICURIO_VERSION) needs Java 21 or newer; none found (set REGISTRY_JAVA)"
}

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] error: %s\n' "$*" >&2; exit 1; }

now_ms() { date +%s%3N; }

# choose_ports: TANMA_<VAR> where set, free loopback ports for the rest; saved in $STATE/ports.
choose_ports() {
  local v envvar args=()
  for v in "${PORT_VARS[@]}"; do envvar="TANMA_$v"; args+=("$v=${!envvar:-}"); done
  python3 "$here/free_ports.py" "${args[@]}" >"$STATE/ports.tmp" || die "cannot choose ports"
  mv "$STATE/ports.tmp" "$STATE/ports"
  load_ports
}

# load_ports: the ports of the last `start` in this $STATE.
load_ports() {
  [ -f "$STATE/ports" ] || die "no $STATE/ports: run '$0 start' first (if an older infra.sh started it: '$0 stop', then start)"
  # shellcheck disable=SC1091
  source "$STATE/ports"
}

fetch() {
  command -v mvn >/dev/null || die "mvn not found: Maven is needed to fetch the broker jars"
  command -v "$JAVA" >/dev/null || die "java not found: Java 17+ is needed to run the broker"
  if [ ! -f "$KAFKA_LIBS/.complete" ]; then
    log "resolving Kafka $KAFKA_VERSION jars into $KAFKA_LIBS"
    rm -rf "$KAFKA_LIBS"
    mvn -B -q -f "$here/pom.xml" -Dkafka.version="$KAFKA_VERSION" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS"
    touch "$KAFKA_LIBS/.complete"
  fi
  if [ ! -f "$APICURIO_HOME/.complete" ]; then
    log "resolving Apicurio Registry $APICURIO_VERSION into $APICURIO_HOME"
    rm -rf "$APICURIO_HOME"
    mvn -B -q -f "$here/pom.xml" dependency:unpack -Dmdep.overWriteReleases=true \
      -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" -DoutputDirectory="$APICURIO_HOME"
    [ -f "$APICURIO_HOME/quarkus-run.jar" ] || die "Apicurio archive has no quarkus-run.jar"
    touch "$APICURIO_HOME/.complete"
  fi
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for NAME DEADLINE_SECS PIDFILE LOGFILE CMD...: poll CMD until it succeeds, the process dies, or time runs out.
wait_for() {
  local name="$1" secs="$2" pidfile="$3" logfile="$4"; shift 4
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if ! alive "$pidfile"; then
      tail -n 40 "$logfile" >&2 || true
      die "$name exited during start-up (log: $logfile)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 40 "$logfile" >&2 || true
      die "$name did not answer within ${secs}s (log: $logfile)"
    fi
    sleep 0.2
  done
}

kafka_java_opts=(-Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:TieredStopAtLevel=1
  -Djava.awt.headless=true "-Dlog4j2.configurationFile=$here/log4j2.properties" -cp "$KAFKA_LIBS/*")

# make_certs DIR: a throw-away CA and a broker certificate for 127.0.0.1 (PEM: PKCS#8 key + chain).
make_certs() {
  local dir="$1"
  mkdir -p "$dir"
  command -v openssl >/dev/null || die "openssl not found: needed for the broker's TLS listener"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tanma-test-ca" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/broker.key" -out "$dir/broker.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san.ext"
  openssl x509 -req -in "$dir/broker.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/san.ext" -out "$dir/broker.crt" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$dir/broker.key" -out "$dir/broker.pk8"
  cat "$dir/broker.pk8" "$dir/broker.crt" "$dir/ca.pem" >"$dir/broker.pem"
}

# Users of the SASL_SSL listener, each with SCRAM-SHA-512 and PLAIN credentials (same password):
# admin, a super user; connector, with exactly the ACLs the connector needs (docs/OPERATIONS.md)
# on the prefixes below; and one user per right the connector needs, lacking just that right.
SASL_LACKING=(nowrite:Write notxn:TransactionalId nocreate:Create nodescribe:DescribeConfigs noread:Read)
SASL_USERS=(admin connector "${SASL_LACKING[@]%%:*}")
# The ACLs hold for names starting with these prefixes (PREFIXED patterns), one per topic role,
# so that tests with unique names get exactly the rights of each role.
SASL_PREFIX=tanma-sasl

# make_sasl_users DIR: a random throw-away password per user, in DIR/sasl.env (KAFKA_SASL_<USER>_PASSWORD).
make_sasl_users() {
  local dir="$1" u
  mkdir -p "$dir"
  ( umask 077
    for u in "${SASL_USERS[@]}"; do
      printf 'KAFKA_SASL_%s_PASSWORD=%s\n' "${u^^}" "$(openssl rand -hex 16)"
    done >"$dir/sasl.env" )
}

# sasl_password USER: the password make_sasl_users chose for USER.
sasl_password() {
  local var="KAFKA_SASL_${1^^}_PASSWORD"
  # shellcheck disable=SC1091
  ( source "$STATE/kafka/sasl.env" && printf '%s' "${!var}" )
}

start_kafka() {
  if alive "$STATE/kafka.pid"; then log "Kafka already running (pid $(cat "$STATE/kafka.pid"))"; return; fi
  local data="$STATE/kafka" u plain="" scram=()
  rm -rf "$data"; mkdir -p "$data"
  make_certs "$data/tls"
  make_sasl_users "$data"
  for u in "${SASL_USERS[@]}"; do
    plain+=" user_$u=\"$(sasl_password "$u")\""
    scram+=(--add-scram "SCRAM-SHA-512=[name=$u,password=$(sasl_password "$u")]")
  done
  sed -e "s#@DATA@#$data#g" -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#g" \
    -e "s#@KAFKA_TLS_PORT@#$KAFKA_TLS_PORT#g" -e "s#@KAFKA_SASL_PORT@#$KAFKA_SASL_PORT#g" \
    -e "s#@PLAIN_USERS@#${plain# }#g" \
    "$here/server.properties.in" >"$data/server.properties"
  chmod 600 "$data/server.properties"
  local t0; t0=$(now_ms)
  "$JAVA" "${kafka_java_opts[@]}" kafka.tools.StorageTool format --standalone -t "$("$JAVA" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null || echo 4L6g3nShT-eMCtK--X86sw)" \
    "${scram[@]}" -c "$data/server.properties" >"$data/format.log" 2>&1 || { cat "$data/format.log" >&2; die "formatting the KRaft log dir failed"; }
  launch_kafka "$t0" "incl. format"
  t0=$(now_ms)
  create_acls
  log "ACLs of the SASL users created in $(( $(now_ms) - t0 )) ms"
}

# connector_acls USER [LACKS]: the connector's ACLs (docs/OPERATIONS.md) for USER, except LACKS
# (Create, Write, Read, DescribeConfigs or TransactionalId), as kafka_acls.py rules. Write and
# Read imply Describe.
connector_acls() {
  local u="$1" lacks="${2:-}" p="$SASL_PREFIX" r
  for r in events state checkpoint dlq; do
    [ "$lacks" = Create ] || echo "$u:Create:topic:$p.$r."
    [ "$lacks" = Write ] || echo "$u:Write:topic:$p.$r."
  done
  for r in state checkpoint dlq; do
    [ "$lacks" = Read ] || echo "$u:Read:topic:$p.$r."
  done
  for r in state checkpoint; do
    [ "$lacks" = DescribeConfigs ] || echo "$u:DescribeConfigs:topic:$p.$r."
  done
  [ "$lacks" = TransactionalId ] || echo "$u:Write:transactional-id:$p.txn."
}

# create_acls: every SASL user's ACLs (PREFIXED allow rules) in one request over the plaintext
# listener, whose User:ANONYMOUS is a super user.
create_acls() {
  local u rules
  mapfile -t rules < <(connector_acls connector
    for u in "${SASL_LACKING[@]}"; do connector_acls "${u%%:*}" "${u#*:}"; done)
  python3 "$here/kafka_acls.py" "127.0.0.1:$KAFKA_PORT" "${rules[@]}" >"$STATE/kafka/acls.log" 2>&1 \
    || { cat "$STATE/kafka/acls.log" >&2; die "creating the ACLs of the SASL users failed"; }
}

# launch_kafka T0 NOTE: run the broker on the formatted log dir in $STATE/kafka, wait until it answers.
launch_kafka() {
  local data="$STATE/kafka"
  "$JAVA" "${kafka_java_opts[@]}" kafka.Kafka "$data/server.properties" >>"$data/kafka.log" 2>&1 &
  echo $! >"$STATE/kafka.pid"
  wait_for "Kafka" 120 "$STATE/kafka.pid" "$data/kafka.log" python3 "$here/kafka_ready.py" "127.0.0.1:$KAFKA_PORT"
  log "Kafka $KAFKA_VERSION up on 127.0.0.1:$KAFKA_PORT in $(( $(now_ms) - $1 )) ms ($2)"
}

# Starts the broker again on the log dir of an earlier `start`, keeping its data (chaos runs).
resume_kafka() {
  if alive "$STATE/kafka.pid"; then log "Kafka already running (pid $(cat "$STATE/kafka.pid"))"; return; fi
  [ -f "$STATE/kafka/server.properties" ] || die "no Kafka log dir in $STATE/kafka: run '$0 start' first"
  launch_kafka "$(now_ms)" "data kept"
}

start_registry() {
  if alive "$STATE/registry.pid"; then log "registry already running (pid $(cat "$STATE/registry.pid"))"; return; fi
  local data="$STATE/registry"
  rm -rf "$data"; mkdir -p "$data"
  local t0; t0=$(now_ms)
  local rjava; rjava=$(registry_java)
  ( cd "$data" && exec "$rjava" -Xmx384m -XX:TieredStopAtLevel=1 \
      -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
      -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$REGISTRY_MGMT_PORT" \
      -jar "$APICURIO_HOME/quarkus-run.jar" ) >"$data/registry.log" 2>&1 &
  echo $! >"$STATE/registry.pid"
  wait_for "schema registry" 180 "$STATE/registry.pid" "$data/registry.log" \
    curl -fsS "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7/subjects"
  log "Apicurio Registry $APICURIO_VERSION up on 127.0.0.1:$REGISTRY_PORT in $(( $(now_ms) - t0 )) ms"
}

stop_one() {
  local name="$1" pidfile="$STATE/$1.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "$name did not stop on SIGTERM; killing"; kill -KILL "$pid" 2>/dev/null || true; fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

write_env() {
  local u
  {
    cat <<ENV
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
export SCHEMA_REGISTRY_URL=http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7
export KAFKA_TLS_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_TLS_PORT
export KAFKA_TLS_CA=$STATE/kafka/tls/ca.pem
export KAFKA_SASL_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_SASL_PORT
export KAFKA_SASL_CA=$STATE/kafka/tls/ca.pem
export KAFKA_SASL_MECHANISMS=SCRAM-SHA-512,PLAIN
export KAFKA_SASL_EVENTS_PREFIX=$SASL_PREFIX.events.
export KAFKA_SASL_STATE_PREFIX=$SASL_PREFIX.state.
export KAFKA_SASL_CHECKPOINT_PREFIX=$SASL_PREFIX.checkpoint.
export KAFKA_SASL_DLQ_PREFIX=$SASL_PREFIX.dlq.
export KAFKA_SASL_TXN_PREFIX=$SASL_PREFIX.txn.
ENV
    for u in "${SASL_USERS[@]}"; do
      printf 'export KAFKA_SASL_%s_USER=%s\n' "${u^^}" "$u"
      printf 'export KAFKA_SASL_%s_PASSWORD=%s\n' "${u^^}" "$(sasl_password "$u")"
    done
  } >"$STATE/env.tmp"
  chmod 600 "$STATE/env.tmp"
  mv "$STATE/env.tmp" "$STATE/env"
}

cmd="${1:-}"
case "$cmd" in
  fetch) fetch ;;
  start)
    mkdir -p "$STATE"
    fetch
    if alive "$STATE/kafka.pid" || alive "$STATE/registry.pid"; then load_ports; else choose_ports; fi
    start_kafka
    start_registry
    write_env
    cat "$STATE/env"
    ;;
  stop)
    stop_one registry
    stop_one kafka
    rm -f "$STATE/env"
    ;;
  stop-kafka) stop_one kafka ;;
  start-kafka) load_ports; resume_kafka ;;
  restart-kafka) load_ports; stop_one kafka; resume_kafka ;;
  status)
    if alive "$STATE/kafka.pid" && alive "$STATE/registry.pid"; then cat "$STATE/env"; else echo "not running"; exit 1; fi
    ;;
  *) echo "usage: $0 fetch|start|stop|status|stop-kafka|start-kafka|restart-kafka" >&2; exit 2 ;;
esac
