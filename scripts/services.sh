#!/usr/bin/env bash
# Start MariaDB, Redis, RabbitMQ and Elasticsearch on loopback for tests and development.
#
# Installs what is missing (Debian packages; Elasticsearch's integration-test zip from Maven
# Central), starts each engine as a private instance on its own port under $SERVICES_DIR, waits
# until each answers, and prints the environment variables that point graphql-chat at them
# (also written to $SERVICES_DIR/env). Idempotent: what already answers is left running.
set -euo pipefail

SERVICES_DIR=${SERVICES_DIR:-/var/tmp/graphql-chat-services}
MYSQL_PORT=${MYSQL_PORT:-3406}
REDIS_PORT=${REDIS_PORT:-6479}
# A Redis Cluster of three masters on this port and the next two (cluster bus: port + 10000).
REDIS_CLUSTER_PORT=${REDIS_CLUSTER_PORT:-6491}
RABBITMQ_PORT=${RABBITMQ_PORT:-5772}
RABBITMQ_MANAGEMENT_PORT=${RABBITMQ_MANAGEMENT_PORT:-15772}
ELASTICSEARCH_PORT=${ELASTICSEARCH_PORT:-9400}
# The newest Elasticsearch published as an integ-test zip when this was written; 9.x needs
# Java 21+, found below (8.19.21 is the fallback for a machine with only Java 17).
ELASTICSEARCH_VERSION=${ELASTICSEARCH_VERSION:-9.5.4}
ELASTICSEARCH_FALLBACK_VERSION=8.19.21
ES_USER=graphql-chat-es

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$SERVICES_DIR"
log() { echo "services: $*" >&2; }

wait_for() { # description, seconds, command...
  local what=$1 seconds=$2
  shift 2
  for _ in $(seq $((seconds * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "$what did not come up in ${seconds}s"
  return 1
}

"$here/install-debian-packages.sh" mariadb-server mariadb-client redis-server rabbitmq-server unzip curl

# -- MariaDB ------------------------------------------------------------------------------------
mysql_up() { mariadb-admin --protocol=tcp -h127.0.0.1 -P"$MYSQL_PORT" -uchat -pchat ping; }
if ! mysql_up >/dev/null 2>&1; then
  data="$SERVICES_DIR/mariadb"
  if [ ! -d "$data/mysql" ]; then
    log "initialising MariaDB in $data"
    mkdir -p "$data" && chown -R mysql:mysql "$data"
    mariadb-install-db --user=mysql --datadir="$data" --auth-root-authentication-method=socket \
      >"$SERVICES_DIR/mariadb-install.log" 2>&1
  fi
  log "starting MariaDB on 127.0.0.1:$MYSQL_PORT"
  rm -f "$data/mariadb.sock" "$data/mariadb.pid"  # left behind if it was killed
  runuser -u mysql -- mariadbd --datadir="$data" --port="$MYSQL_PORT" --bind-address=127.0.0.1 \
    --socket="$data/mariadb.sock" --pid-file="$data/mariadb.pid" \
    --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=1 \
    --max-connections=500 --skip-name-resolve --log-error="$SERVICES_DIR/mariadb.log" \
    </dev/null >/dev/null 2>&1 &
  wait_for "MariaDB socket" 60 mariadb-admin --socket="$data/mariadb.sock" -uroot ping
  mariadb --socket="$data/mariadb.sock" -uroot <<'SQL'
CREATE USER IF NOT EXISTS 'chat'@'127.0.0.1' IDENTIFIED BY 'chat';
CREATE USER IF NOT EXISTS 'chat'@'localhost' IDENTIFIED BY 'chat';
GRANT ALL PRIVILEGES ON *.* TO 'chat'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO 'chat'@'localhost';
CREATE DATABASE IF NOT EXISTS graphql_chat CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
SQL
  wait_for "MariaDB" 30 mysql_up
fi

# -- Redis --------------------------------------------------------------------------------------
redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping | grep -q PONG; }
if ! redis_up >/dev/null 2>&1; then
  mkdir -p "$SERVICES_DIR/redis" && chown redis:redis "$SERVICES_DIR/redis"
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  runuser -u redis -- redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
    --dir "$SERVICES_DIR/redis" --appendonly yes --appendfsync always --save "" \
    --daemonize yes --logfile "$SERVICES_DIR/redis/redis.log"
  wait_for "Redis" 30 redis_up
fi

# -- Redis Cluster ------------------------------------------------------------------------------
cluster_ports=("$REDIS_CLUSTER_PORT" $((REDIS_CLUSTER_PORT + 1)) $((REDIS_CLUSTER_PORT + 2)))
cluster_up() { redis-cli -h 127.0.0.1 -p "$REDIS_CLUSTER_PORT" cluster info | grep -q cluster_state:ok; }
if ! cluster_up >/dev/null 2>&1; then
  log "starting a Redis Cluster of three masters on 127.0.0.1:${cluster_ports[*]}"
  for port in "${cluster_ports[@]}"; do # a half-made cluster of an earlier run goes first
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  for port in "${cluster_ports[@]}"; do
    dir="$SERVICES_DIR/redis-cluster/$port"
    rm -rf "$dir" && mkdir -p "$dir" && chown redis:redis "$dir"
    runuser -u redis -- redis-server --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout 5000 --dir "$dir" \
      --appendonly yes --appendfsync always --save "" --daemonize yes --logfile "$dir/redis.log"
  done
  for port in "${cluster_ports[@]}"; do
    wait_for "Redis Cluster node $port" 30 redis-cli -h 127.0.0.1 -p "$port" ping
  done
  redis-cli --cluster create "${cluster_ports[@]/#/127.0.0.1:}" --cluster-replicas 0 \
    --cluster-yes >"$SERVICES_DIR/redis-cluster/create.log"
  wait_for "Redis Cluster" 30 cluster_up
fi

# -- RabbitMQ -----------------------------------------------------------------------------------
export RABBITMQ_NODENAME=graphql-chat@localhost
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$RABBITMQ_PORT
export RABBITMQ_DIST_PORT=$((RABBITMQ_PORT + 20000))
export RABBITMQ_MNESIA_BASE=$SERVICES_DIR/rabbitmq/mnesia
export RABBITMQ_LOG_BASE=$SERVICES_DIR/rabbitmq/log
export RABBITMQ_PID_FILE=$SERVICES_DIR/rabbitmq/rabbitmq.pid
export RABBITMQ_ENABLED_PLUGINS_FILE=$SERVICES_DIR/rabbitmq/enabled_plugins
export RABBITMQ_CONFIG_FILE=$SERVICES_DIR/rabbitmq/rabbitmq
export ERL_EPMD_ADDRESS=127.0.0.1
rabbit_up() {
  runuser -u rabbitmq -- rabbitmq-diagnostics -q -n "$RABBITMQ_NODENAME" check_port_connectivity &&
    curl -fsS -u guest:guest "http://127.0.0.1:$RABBITMQ_MANAGEMENT_PORT/api/overview"
}
if ! rabbit_up >/dev/null 2>&1; then
  mkdir -p "$SERVICES_DIR/rabbitmq/mnesia" "$SERVICES_DIR/rabbitmq/log"
  # The management API is for operators and the benchmark's queue readings (the product reads
  # no queue statistics). Statistics every 500 ms keep it fresh.
  echo "[rabbitmq_management]." >"$RABBITMQ_ENABLED_PLUGINS_FILE"
  cat >"$RABBITMQ_CONFIG_FILE.conf" <<EOF
listeners.tcp.default = $RABBITMQ_PORT
loopback_users.guest = true
management.tcp.ip = 127.0.0.1
management.tcp.port = $RABBITMQ_MANAGEMENT_PORT
collect_statistics_interval = 500
EOF
  chown -R rabbitmq:rabbitmq "$SERVICES_DIR/rabbitmq"
  rabbitmqctl_() { runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq rabbitmqctl -q -n "$RABBITMQ_NODENAME" "$@"; }
  if rabbitmqctl_ ping >/dev/null 2>&1; then
    # The node runs with its application stopped (`rabbitmqctl stop_app`): start the app.
    log "starting RabbitMQ's application on its running node"
    rabbitmqctl_ start_app >"$SERVICES_DIR/rabbitmq/start.log" 2>&1 || true
  else
    rm -f "$RABBITMQ_PID_FILE"  # left behind if it was killed
    log "starting RabbitMQ on 127.0.0.1:$RABBITMQ_PORT"
    runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq rabbitmq-server -detached \
      </dev/null >"$SERVICES_DIR/rabbitmq/start.log" 2>&1 || true
  fi
  wait_for "RabbitMQ" 120 rabbit_up
fi

# -- Elasticsearch ------------------------------------------------------------------------------
es_up() { curl -fsS "http://127.0.0.1:$ELASTICSEARCH_PORT/_cluster/health?wait_for_status=yellow&timeout=1s"; }
if ! es_up >/dev/null 2>&1; then
  java_home=""
  for candidate in /usr/lib/jvm/*; do
    [ -x "$candidate/bin/java" ] || continue
    major=$("$candidate/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
    if [ "${major:-0}" -ge 21 ]; then java_home=$candidate; fi
  done
  version=$ELASTICSEARCH_VERSION
  if [ -z "$java_home" ]; then
    version=$ELASTICSEARCH_FALLBACK_VERSION
    java_home=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
  fi
  home="$SERVICES_DIR/elasticsearch-$version"
  if [ ! -x "$home/bin/elasticsearch" ]; then
    log "fetching Elasticsearch $version (integ-test zip)"
    mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
      -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$version:zip" \
      -DoutputDirectory="$SERVICES_DIR" >"$SERVICES_DIR/mvn.log" 2>&1
    unzip -q -o "$SERVICES_DIR/elasticsearch-$version.zip" -d "$SERVICES_DIR"
  fi
  id "$ES_USER" >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin "$ES_USER"
  mkdir -p "$SERVICES_DIR/es-data" "$SERVICES_DIR/es-logs"
  chown -R "$ES_USER" "$home" "$SERVICES_DIR/es-data" "$SERVICES_DIR/es-logs"
  log "starting Elasticsearch $version on 127.0.0.1:$ELASTICSEARCH_PORT (Java at $java_home)"
  rm -f "$SERVICES_DIR/es-logs/es.pid"  # left behind if it was killed
  runuser -u "$ES_USER" -- env ES_JAVA_HOME="$java_home" ES_JAVA_OPTS="-Xms512m -Xmx512m" \
    "$home/bin/elasticsearch" -d -p "$SERVICES_DIR/es-logs/es.pid" \
    -Ediscovery.type=single-node -Enetwork.host=127.0.0.1 -Ehttp.port="$ELASTICSEARCH_PORT" \
    -Etransport.port=$((ELASTICSEARCH_PORT + 1)) -Expack.security.enabled=false \
    -Expack.ml.enabled=false -Ecluster.routing.allocation.disk.threshold_enabled=false \
    -Epath.data="$SERVICES_DIR/es-data" -Epath.logs="$SERVICES_DIR/es-logs" \
    </dev/null >"$SERVICES_DIR/es-start.log" 2>&1
  wait_for "Elasticsearch" 180 es_up
fi

cat >"$SERVICES_DIR/env" <<EOF
export DATABASE_URL=mysql+asyncmy://chat:chat@127.0.0.1:$MYSQL_PORT/graphql_chat
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export REDIS_CLUSTER_URL=redis+cluster://127.0.0.1:${cluster_ports[0]},127.0.0.1:${cluster_ports[1]},127.0.0.1:${cluster_ports[2]}
export RABBITMQ_URL=amqp://guest:guest@127.0.0.1:$RABBITMQ_PORT/
export RABBITMQ_MANAGEMENT_URL=http://guest:guest@127.0.0.1:$RABBITMQ_MANAGEMENT_PORT
export ELASTICSEARCH_URL=http://127.0.0.1:$ELASTICSEARCH_PORT
EOF
log "all are up; to use them (REDIS_CLUSTER_URL: the same numbering on Redis Cluster):"
cat "$SERVICES_DIR/env"
