#!/usr/bin/env bash
# Loopback test servers for Satchel's backend tests (DESIGN.md, "Test servers").
#
#   scripts/services.sh up      start whatever is not already answering on its port
#   scripts/services.sh down    stop what this script started (found by its pid files)
#   scripts/services.sh status  show each service and whether its port answers
#   scripts/services.sh env     print the SATCHEL_*_URL exports (eval "$(scripts/services.sh env)")
#
# Servers run as plain daemons (no systemd), listen on 127.0.0.1 only, and keep
# data, logs and pid files under $SATCHEL_SERVICES_DIR (default $REPO/.services).
# Missing Debian packages are installed with apt-get (through sudo when not root).
# SATCHEL_SKIP_{REDIS,MEMCACHED,POSTGRES,MYSQL,MONGODB}=1 leaves that backend alone.
#
# SATCHEL_SERVICES picks who runs the shared servers (Redis 6379, memcached 11211/11212,
# PostgreSQL, MariaDB, MongoDB):
#   auto    (default) Docker Compose when a Docker engine answers, else native daemons;
#   docker  Docker Compose (docker-compose.yml, project "satchel"; a real `mongo`);
#   native  daemons from Debian packages (SecantusDB for MongoDB).
# Either way Redis Cluster and Sentinel run as native daemons, and the server binaries
# some tests start privately (redis-server, memcached, PostgreSQL's) come from Debian
# packages, so a machine without apt-get needs those installed (or the backend skipped).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${SATCHEL_SERVICES_DIR:-$REPO/.services}
VENV=${SATCHEL_SERVICES_VENV:-$REPO/.venv-services}
WAIT_SECS=${SATCHEL_SERVICES_WAIT:-30}
SECANTUS_PIN='SecantusDB==0.7.0b3'
export DEBIAN_FRONTEND=noninteractive

REDIS_PORT=6379
CLUSTER_PORTS=(7001 7002 7003)
SENTINEL_MASTER_PORT=6380
SENTINEL_REPLICA_PORT=6381
SENTINEL_PORT=26379
SENTINEL_NAME=satchel-master
MEMCACHED_PORTS=(11211 11212)
POSTGRES_PORT=5432
MYSQL_PORT=3306
MONGODB_PORT=27017

POSTGRES_URL="postgres://satchel:satchel@127.0.0.1:$POSTGRES_PORT/satchel"
MYSQL_URL="mysql://satchel:satchel@127.0.0.1:$MYSQL_PORT/satchel"
MONGODB_URL="mongodb://127.0.0.1:$MONGODB_PORT"

SERVICES_MODE=${SATCHEL_SERVICES:-auto}
COMPOSE_PROJECT=satchel

# ---------------------------------------------------------------- helpers

say() { printf '%s\n' "$*"; }
warn() { printf 'services.sh: warning: %s\n' "$*" >&2; }
die() { printf 'services.sh: %s\n' "$*" >&2; exit 1; }
is_root() { [[ $(id -u) -eq 0 ]]; }

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if is_root; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root for: $* (install sudo or run as root)"
  fi
}

# SATCHEL_SKIP_<BACKEND>=1 (or true/yes) means: do not start that backend.
skipped() {
  local var="SATCHEL_SKIP_$1"
  case "${!var:-}" in 1 | true | yes) return 0 ;; *) return 1 ;; esac
}

# Does something accept TCP connections on 127.0.0.1:$1? (bash's /dev/tcp: no nc needed)
port_open() {
  # shellcheck disable=SC2016 # $1 is expanded by the inner bash
  timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# Print the tail of a log and exit non-zero, naming the service.
fail_start() {
  local name=$1 log=$2
  printf 'services.sh: %s failed to start' "$name" >&2
  if [[ -f $log ]]; then
    printf '; last lines of %s:\n' "$log" >&2
    tail -n 30 "$log" >&2 || true
  else
    printf ' (no log at %s)\n' "$log" >&2
  fi
  exit 1
}

# Wait (bounded) until the port answers; fail with the log tail otherwise.
wait_port() {
  local name=$1 port=$2 log=$3 deadline=$((SECONDS + WAIT_SECS))
  until port_open "$port"; do
    ((SECONDS < deadline)) || fail_start "$name" "$log"
    sleep 0.2
  done
}

# Poll a command (bounded) until it succeeds; return 1 on timeout.
wait_for() {
  local deadline=$((SECONDS + WAIT_SECS))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

pid_of() { [[ -s $1 ]] && head -n 1 "$1"; }

# Alive and not a zombie: in containers pid 1 may reap exited daemons late.
proc_running() {
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

pid_alive() {
  local pid
  pid=$(pid_of "$1") && [[ $pid =~ ^[0-9]+$ ]] && proc_running "$pid"
}

# Stop a daemon we started, found by its pid file; other processes are never touched.
stop_pidfile() {
  local name=$1 pidfile=$2 signal=${3:-TERM} pid deadline
  if ! pid_alive "$pidfile"; then
    say "$name: not running (nothing started by services.sh)"
    return 0
  fi
  pid=$(pid_of "$pidfile")
  kill "-$signal" "$pid" 2>/dev/null || true
  deadline=$((SECONDS + WAIT_SECS))
  while proc_running "$pid"; do
    if ((SECONDS >= deadline)); then
      warn "$name (pid $pid) ignored SIG$signal for ${WAIT_SECS}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  # postgres removes its own postmaster.pid; leave that one alone
  [[ $pidfile == */postmaster.pid ]] || rm -f "$pidfile"
  say "$name: stopped"
}

# Find a binary even when sbin is not on a non-root user's PATH.
find_bin() {
  local name dir
  for name in "$@"; do
    if command -v "$name" >/dev/null; then command -v "$name"; return 0; fi
    for dir in /usr/sbin /usr/local/sbin /sbin; do
      if [[ -x $dir/$name ]]; then printf '%s\n' "$dir/$name"; return 0; fi
    done
  done
  return 1
}

# Directory holding initdb/pg_ctl/postgres: PATH first, then Debian's versioned dirs.
pg_bindir() {
  local dir
  if dir=$(dirname "$(command -v pg_ctl 2>/dev/null)" 2>/dev/null) &&
    [[ -x $dir/pg_ctl && -x $dir/initdb && -x $dir/postgres ]]; then
    printf '%s\n' "$dir"
    return 0
  fi
  for dir in $(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -rV); do
    if [[ -x $dir/pg_ctl && -x $dir/initdb && -x $dir/postgres ]]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}

# ---------------------------------------------------------------- packages

APT_UPDATED=0
POLICY_RC_ADDED=0

apt_update() {
  ((APT_UPDATED)) && return 0
  APT_UPDATED=1
  # Unreachable third-party repos make update exit non-zero; the install decides.
  as_root apt-get -o DPkg::Lock::Timeout=300 update || warn "apt-get update reported errors; trying the install anyway"
}

apt_get_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
    install -y --no-install-recommends "$@"
}

remove_policy_rc() {
  if ((POLICY_RC_ADDED)); then
    as_root rm -f /usr/sbin/policy-rc.d || true
    POLICY_RC_ADDED=0
  fi
}

apt_install() {
  command -v apt-get >/dev/null ||
    die "missing: $* (Debian package names), and no apt-get to install them: install the servers' binaries yourself, or set SATCHEL_SKIP_<BACKEND>=1 for the backends to leave out"
  say "services.sh: installing Debian packages: $*"
  # Keep the packages' init scripts from starting distro-configured servers on
  # the very ports we are about to use (policy-rc.d exit 101 = "don't start").
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d
    POLICY_RC_ADDED=1
    trap remove_policy_rc EXIT
  fi
  # Fresh machines have no package lists at all: update before the first install.
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    apt_update
  fi
  local rc=0
  if ! apt_get_install "$@"; then
    # Stale lists point at files the mirror no longer has: refresh once, retry.
    apt_update
    apt_get_install "$@" || rc=$?
  fi
  remove_policy_rc
  ((rc == 0)) || die "apt-get install $* failed"
}

# Work out every missing package first so apt runs once.
ensure_packages() {
  local pkgs=()
  if ! skipped REDIS; then
    if ! { find_bin redis-server && find_bin redis-cli; } >/dev/null; then pkgs+=(redis-server); fi
  fi
  if ! skipped MEMCACHED; then
    if ! find_bin memcached >/dev/null; then pkgs+=(memcached); fi
  fi
  if ! skipped POSTGRES; then
    if ! pg_bindir >/dev/null; then pkgs+=(postgresql); fi
    if ! find_bin psql >/dev/null; then pkgs+=(postgresql-client); fi
  fi
  # With Docker Compose, MariaDB and MongoDB only ever run in their containers; the
  # Redis, memcached and PostgreSQL binaries are still needed by the tests' private servers.
  if ! skipped MYSQL && [[ $SERVICES_MODE != docker ]]; then
    if ! { find_bin mariadbd mysqld && find_bin mariadb-install-db mysql_install_db &&
      find_bin mariadb mysql; } >/dev/null; then pkgs+=(mariadb-server mariadb-client); fi
  fi
  if ! skipped MONGODB && [[ $SERVICES_MODE != docker ]]; then
    if ! command -v python3 >/dev/null; then
      pkgs+=(python3 python3-venv)
    elif ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
      pkgs+=(python3-venv)
    fi
  fi
  if ((${#pkgs[@]})); then apt_install "${pkgs[@]}"; fi
}

# ---------------------------------------------------------------- redis

# Start one redis-server daemon in $STATE/redis-$port unless the port answers.
# Returns 0 when it started one, 1 when something already answered.
start_redis_node() {
  local name=$1 port=$2 dir
  shift 2
  port_open "$port" && return 1
  dir="$STATE/redis-$port"
  mkdir -p "$dir"
  # shellcheck disable=SC2094 # both writers append; redis only names the file
  "$(find_bin redis-server)" --bind 127.0.0.1 --port "$port" --daemonize yes \
    --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "$@" \
    >>"$dir/redis.log" 2>&1 || fail_start "$name" "$dir/redis.log"
  wait_port "$name" "$port" "$dir/redis.log"
  # the port answers while the AOF/RDB is still loading (or failing to load)
  wait_for rcli_match '^PONG' -p "$port" ping || fail_start "$name" "$dir/redis.log"
  return 0
}

rcli() { "$(find_bin redis-cli)" -h 127.0.0.1 "$@"; }

# Does a redis-cli reply match a pattern? (Captured first: `rcli | grep -q` can
# kill redis-cli with SIGPIPE, which pipefail would report as a failure.)
rcli_match() {
  local pattern=$1 out
  shift
  out=$(rcli "$@" 2>/dev/null) || return 1
  grep -q -- "$pattern" <<<"$out"
}

up_redis() {
  # appendonly: sessions written before a restart are still there after it
  if start_redis_node redis "$REDIS_PORT" --appendonly yes; then
    say "redis ($REDIS_PORT): started"
  else
    say "redis ($REDIS_PORT): already running"
  fi
}

cluster_ok() {
  local port
  for port in "${CLUSTER_PORTS[@]}"; do
    rcli_match '^cluster_state:ok' -p "$port" cluster info || return 1
  done
}

cluster_empty() {
  local port
  for port in "${CLUSTER_PORTS[@]}"; do
    rcli_match '^cluster_slots_assigned:0' -p "$port" cluster info || return 1
  done
}

up_redis_cluster() {
  local port started=0 addrs=() log="$STATE/redis-cluster-create.log"
  for port in "${CLUSTER_PORTS[@]}"; do
    addrs+=("127.0.0.1:$port")
    # nodes.conf remembers node ids and slots, so a restarted cluster re-forms by itself
    if start_redis_node "redis-cluster node $port" "$port" --cluster-enabled yes \
      --cluster-config-file "$STATE/redis-$port/nodes.conf" --cluster-node-timeout 5000; then
      started=1
    fi
  done
  # Form the cluster only when no node has any slot yet (fresh state dir).
  if cluster_empty; then
    rcli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >>"$log" 2>&1 ||
      fail_start redis-cluster "$log"
  fi
  if ! wait_for cluster_ok; then
    rcli -p "${CLUSTER_PORTS[0]}" cluster info >>"$log" 2>&1 || true
    warn "redis-cluster: state not ok; if its nodes.conf files disagree, run: $0 down && rm -rf $STATE/redis-700?"
    fail_start redis-cluster "$log"
  fi
  if ((started)); then
    say "redis-cluster (${CLUSTER_PORTS[*]}): started"
  else
    say "redis-cluster (${CLUSTER_PORTS[*]}): already running"
  fi
}

# Which of the two sentinel-managed servers is master right now (after a
# failover in a test it can be the replica port); defaults to the master port.
current_master_port() {
  local port role
  for port in "$SENTINEL_MASTER_PORT" "$SENTINEL_REPLICA_PORT"; do
    role=$(rcli -p "$port" role 2>/dev/null) || continue
    if [[ ${role%%$'\n'*} == master ]]; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  printf '%s\n' "$SENTINEL_MASTER_PORT"
}

sentinel_ready() {
  rcli_match . -p "$SENTINEL_PORT" sentinel get-master-addr-by-name "$SENTINEL_NAME" &&
    rcli_match . -p "$SENTINEL_PORT" sentinel replicas "$SENTINEL_NAME"
}

replica_linked() {
  local port
  for port in "$SENTINEL_MASTER_PORT" "$SENTINEL_REPLICA_PORT"; do
    rcli_match '^master_link_status:up' -p "$port" info replication && return 0
  done
  return 1
}

up_redis_sentinel() {
  local started=0 dir="$STATE/redis-$SENTINEL_PORT" conf master
  # Diskless sync without its default 5 s batching delay: the replica links at once.
  local sync=(--repl-diskless-sync yes --repl-diskless-sync-delay 0)
  start_redis_node "redis-sentinel master" "$SENTINEL_MASTER_PORT" "${sync[@]}" && started=1
  start_redis_node "redis-sentinel replica" "$SENTINEL_REPLICA_PORT" "${sync[@]}" \
    --replicaof 127.0.0.1 "$SENTINEL_MASTER_PORT" && started=1
  if ! port_open "$SENTINEL_PORT"; then
    started=1
    mkdir -p "$dir"
    conf="$dir/sentinel.conf"
    master=$(current_master_port)
    # Sentinel rewrites its config; regenerate it on each start so the
    # topology is always the live one. Short timeouts keep failover tests fast.
    cat >"$conf" <<EOF
bind 127.0.0.1
port $SENTINEL_PORT
daemonize yes
dir $dir
pidfile $dir/redis.pid
logfile $dir/redis.log
sentinel resolve-hostnames no
sentinel monitor $SENTINEL_NAME 127.0.0.1 $master 1
sentinel down-after-milliseconds $SENTINEL_NAME 1000
sentinel failover-timeout $SENTINEL_NAME 5000
EOF
    "$(find_bin redis-server)" "$conf" --sentinel >>"$dir/redis.log" 2>&1 ||
      fail_start redis-sentinel "$dir/redis.log"
    wait_port redis-sentinel "$SENTINEL_PORT" "$dir/redis.log"
  fi
  # Tests want a sentinel that already knows the replica and a synced replica.
  wait_for sentinel_ready || fail_start "redis-sentinel (sentinel never saw master+replica)" "$dir/redis.log"
  wait_for replica_linked || fail_start "redis-sentinel (replica never linked)" "$STATE/redis-$SENTINEL_REPLICA_PORT/redis.log"
  if ((started)); then
    say "redis-sentinel ($SENTINEL_MASTER_PORT, $SENTINEL_REPLICA_PORT, $SENTINEL_PORT): started"
  else
    say "redis-sentinel ($SENTINEL_MASTER_PORT, $SENTINEL_REPLICA_PORT, $SENTINEL_PORT): already running"
  fi
}

# ---------------------------------------------------------------- memcached

up_memcached() {
  local port dir user_args=()
  # memcached refuses to run as root without -u; these are throwaway test caches
  if is_root; then user_args=(-u root); fi
  for port in "${MEMCACHED_PORTS[@]}"; do
    if port_open "$port"; then
      say "memcached ($port): already running"
      continue
    fi
    dir="$STATE/memcached-$port"
    mkdir -p "$dir"
    "$(find_bin memcached)" -l 127.0.0.1 -p "$port" -U 0 -d -m 64 -I 2m \
      -P "$dir/memcached.pid" "${user_args[@]}" >>"$dir/memcached.log" 2>&1 ||
      fail_start "memcached $port" "$dir/memcached.log"
    wait_port "memcached $port" "$port" "$dir/memcached.log"
    say "memcached ($port): started"
  done
}

# ---------------------------------------------------------------- postgres

PG_DIR="$STATE/postgres"

# As root the server runs as user postgres, which must be able to reach the
# state dir; when it can't (repo under /root, umask 077), keep the cluster in a
# per-state-dir folder under /var/tmp instead.
resolve_pg_dir() {
  if is_root && id -u postgres >/dev/null 2>&1 && [[ -d $STATE ]] &&
    ! runuser -u postgres -- test -x "$STATE" 2>/dev/null; then
    PG_DIR="/var/tmp/satchel-services-$(printf '%s' "$STATE" | cksum | cut -d' ' -f1)/postgres"
  fi
}

# PostgreSQL refuses to run as root: as root, run it as the postgres user.
as_pg() {
  if is_root; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

psql_ok() {
  "$(find_bin psql)" "$POSTGRES_URL" -v ON_ERROR_STOP=1 -tAc 'select 1' >/dev/null 2>&1
}

up_postgres() {
  local bin log data
  if port_open "$POSTGRES_PORT"; then
    say "postgres ($POSTGRES_PORT): already running"
    psql_ok || warn "postgres: port $POSTGRES_PORT answers but $POSTGRES_URL does not log in"
    return 0
  fi
  bin=$(pg_bindir) || die "postgres: initdb/pg_ctl/postgres not found"
  if is_root; then
    id -u postgres >/dev/null 2>&1 ||
      useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
    resolve_pg_dir
    [[ $PG_DIR == "$STATE"/* ]] || say "postgres: user postgres cannot reach $STATE; using $PG_DIR"
    mkdir -p "$PG_DIR"
    chown postgres: "$PG_DIR"
    chmod 700 "$PG_DIR"
    runuser -u postgres -- test -w "$PG_DIR" || die "postgres: user postgres cannot write $PG_DIR"
  else
    mkdir -p "$PG_DIR"
    chmod 700 "$PG_DIR"
  fi
  log="$PG_DIR/postgres.log"
  data="$PG_DIR/data"
  # created by the server's user, so pg_ctl -l can append to it too
  as_pg touch "$log"
  if [[ ! -f $data/PG_VERSION ]]; then
    # satchel is the bootstrap superuser; password auth on TCP, no unix socket
    printf 'satchel\n' | as_pg tee "$PG_DIR/pwfile" >/dev/null
    as_pg "$bin/initdb" -D "$data" -U satchel --pwfile="$PG_DIR/pwfile" -E UTF8 \
      --auth-local=trust --auth-host=scram-sha-256 >>"$log" 2>&1 || fail_start postgres "$log"
    rm -f "$PG_DIR/pwfile"
    # fsync off etc.: test data, speed matters more than crash safety
    as_pg tee -a "$data/postgresql.conf" >/dev/null <<EOF

# --- added by scripts/services.sh
listen_addresses = '127.0.0.1'
port = $POSTGRES_PORT
unix_socket_directories = ''
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi
  # shellcheck disable=SC2094 # pg_ctl and the server both append to one log
  as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t "$WAIT_SECS" start >>"$log" 2>&1 ||
    fail_start postgres "$log"
  wait_port postgres "$POSTGRES_PORT" "$log"
  local have_db
  have_db=$("$(find_bin psql)" "postgres://satchel:satchel@127.0.0.1:$POSTGRES_PORT/postgres" -tAc \
    "select 1 from pg_database where datname = 'satchel'" 2>>"$log") || true
  if [[ $have_db != 1 ]]; then
    "$(find_bin psql)" "postgres://satchel:satchel@127.0.0.1:$POSTGRES_PORT/postgres" \
      -v ON_ERROR_STOP=1 -qc 'create database satchel owner satchel' >>"$log" 2>&1 ||
      fail_start "postgres (create database satchel)" "$log"
  fi
  psql_ok || fail_start "postgres ($POSTGRES_URL does not log in)" "$log"
  say "postgres ($POSTGRES_PORT): started"
}

# ---------------------------------------------------------------- mariadb

MY_DIR="$STATE/mysql"

mysql_ok() {
  "$(find_bin mariadb mysql)" --no-defaults -h 127.0.0.1 -P "$MYSQL_PORT" -u satchel -psatchel \
    satchel -e 'select 1' >/dev/null 2>&1
}

up_mysql() {
  local log="$MY_DIR/mariadb.log" data="$MY_DIR/data" user_args=() server
  if port_open "$MYSQL_PORT"; then
    say "mysql ($MYSQL_PORT): already running"
    if find_bin mariadb mysql >/dev/null; then
      mysql_ok || warn "mysql: port $MYSQL_PORT answers but $MYSQL_URL does not log in"
    fi
    return 0
  fi
  mkdir -p "$MY_DIR"
  # mariadbd refuses root unless told; our data dir is owned by whoever runs this
  if is_root; then user_args=(--user=root); fi
  if [[ ! -d $data/mysql ]]; then
    "$(find_bin mariadb-install-db mysql_install_db)" --no-defaults --datadir="$data" \
      "${user_args[@]}" --skip-test-db >>"$log" 2>&1 || fail_start "mysql (install-db)" "$log"
  fi
  # Runs at every start and is idempotent: no root login needed to set up the user.
  cat >"$MY_DIR/init.sql" <<'EOF'
CREATE DATABASE IF NOT EXISTS satchel;
CREATE USER IF NOT EXISTS 'satchel'@'127.0.0.1' IDENTIFIED BY 'satchel';
CREATE USER IF NOT EXISTS 'satchel'@'localhost' IDENTIFIED BY 'satchel';
ALTER USER 'satchel'@'127.0.0.1' IDENTIFIED BY 'satchel';
ALTER USER 'satchel'@'localhost' IDENTIFIED BY 'satchel';
GRANT ALL PRIVILEGES ON *.* TO 'satchel'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO 'satchel'@'localhost';
EOF
  server=$(find_bin mariadbd mysqld)
  # --no-defaults: ignore /etc/mysql (its socket dir may not exist); setsid+nohup:
  # detach from this shell so the server outlives it.
  setsid nohup "$server" --no-defaults "${user_args[@]}" --datadir="$data" \
    --bind-address=127.0.0.1 --port="$MYSQL_PORT" --socket="$MY_DIR/mysqld.sock" \
    --pid-file="$MY_DIR/mariadbd.pid" --log-error="$log" --init-file="$MY_DIR/init.sql" \
    --max_allowed_packet=64M --max-connections=300 --skip-name-resolve \
    --innodb-flush-log-at-trx-commit=2 </dev/null >>"$log" 2>&1 &
  wait_port mysql "$MYSQL_PORT" "$log"
  wait_for mysql_ok || fail_start "mysql ($MYSQL_URL does not log in)" "$log"
  say "mysql ($MYSQL_PORT): started"
}

# ---------------------------------------------------------------- mongodb (SecantusDB)

MONGO_DIR="$STATE/mongodb"

ensure_secantus_venv() {
  local stamp="$VENV/.satchel-services" want="$SECANTUS_PIN pymongo"
  if [[ -x $VENV/bin/secantusd-py && -f $stamp && $(<"$stamp") == "$want" ]]; then
    return 0
  fi
  say "services.sh: installing $SECANTUS_PIN into $VENV"
  [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$SECANTUS_PIN" pymongo ||
    die "mongodb: pip install $SECANTUS_PIN failed"
  printf '%s\n' "$want" >"$stamp"
}

# Smoke test through pymongo: what the session store needs (upsert, find, TTL index).
mongo_check() {
  "$VENV/bin/python" - "$MONGODB_URL" <<'EOF'
import datetime, sys
import pymongo

client = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000)
db = client["satchel_services_check"]
col = db["check"]
col.drop()
col.insert_one({"_id": "a", "v": 1, "expires": datetime.datetime.now(datetime.timezone.utc)})
col.update_one({"_id": "b"}, {"$set": {"v": 2}}, upsert=True)
assert col.find_one({"_id": "a"})["v"] == 1, "find after insert"
assert col.find_one({"_id": "b"})["v"] == 2, "find after upsert"
col.create_index("expires", expireAfterSeconds=0)
ttl = [i for i in col.index_information().values() if "expireAfterSeconds" in i]
assert ttl, "TTL index not listed"
client.drop_database("satchel_services_check")
EOF
}

up_mongodb() {
  local log="$MONGO_DIR/secantusd.log" pidfile="$MONGO_DIR/secantusd.pid"
  if port_open "$MONGODB_PORT"; then
    say "mongodb ($MONGODB_PORT): already running"
    return 0
  fi
  ensure_secantus_venv
  mkdir -p "$MONGO_DIR"
  # The inner bash records its own pid, then execs the server under that pid.
  # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner bash
  setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" \
    "$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$MONGODB_PORT" --storage-path :memory: \
    </dev/null >>"$log" 2>&1 &
  wait_port mongodb "$MONGODB_PORT" "$log"
  mongo_check >>"$log" 2>&1 || fail_start "mongodb (pymongo insert/upsert/find/TTL-index check)" "$log"
  say "mongodb ($MONGODB_PORT): started"
}

# ---------------------------------------------------------------- docker compose

COMPOSE=()
# Pulling images and a first database initialisation take longer than a daemon's start.
CONTAINER_WAIT_SECS=${SATCHEL_CONTAINER_WAIT:-180}

# `docker compose` (v2) or `docker-compose` (v1), whichever is installed.
find_compose() {
  if timeout 20 docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null && timeout 20 docker-compose version >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
  else
    return 1
  fi
}

# A compose command, and a Docker engine that answers it.
docker_usable() {
  command -v docker >/dev/null && find_compose && timeout 20 docker info >/dev/null 2>&1
}

compose() {
  "${COMPOSE[@]}" -p "$COMPOSE_PROJECT" --project-directory "$REPO" \
    -f "$REPO/docker-compose.yml" "$@"
}

resolve_mode() {
  case $SERVICES_MODE in
    auto)
      if docker_usable; then SERVICES_MODE=docker; else SERVICES_MODE=native; fi
      ;;
    docker)
      docker_usable || die "SATCHEL_SERVICES=docker, but no Docker engine answers 'docker info' or neither 'docker compose' nor 'docker-compose' is installed (SATCHEL_SERVICES=native runs the servers from Debian packages)"
      ;;
    native) ;;
    *) die "SATCHEL_SERVICES=$SERVICES_MODE: expected auto, docker or native" ;;
  esac
}

# Does memcached answer its protocol on 127.0.0.1:$1? A published container port accepts
# connections before the server inside listens, so an open port proves nothing.
memcached_answers() {
  # shellcheck disable=SC2016 # $1 is expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"; printf "version\r\n" >&3; read -r line <&3; [[ $line == VERSION* ]]' _ "$1" 2>/dev/null
}

# Is the service's container up: healthy where docker-compose.yml has a healthcheck,
# answering the memcached protocol otherwise?
container_ready() {
  local service=$1 id state
  id=$(compose ps -q "$service" 2>/dev/null | head -n 1) && [[ -n $id ]] || return 1
  state=$(docker inspect --format '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" 2>/dev/null) || return 1
  case $state in
    "running healthy") return 0 ;;
    "running ") memcached_answers "${2:?}" ;;
    *) return 1 ;;
  esac
}

# Starts in containers each shared server whose port does not answer yet (one already
# running, native or a container of an earlier run, is left alone) and waits until each is
# ready. Returns 1, with the containers' last log lines, when that fails.
up_compose() {
  local services=() ports=() i deadline log="$STATE/compose.log"
  want() { port_open "$2" || { services+=("$1"); ports+=("$2"); }; }
  skipped REDIS || want redis "$REDIS_PORT"
  if ! skipped MEMCACHED; then
    want memcached "${MEMCACHED_PORTS[0]}"
    want memcached2 "${MEMCACHED_PORTS[1]}"
  fi
  skipped POSTGRES || want postgres "$POSTGRES_PORT"
  skipped MYSQL || want mariadb "$MYSQL_PORT"
  skipped MONGODB || want mongo "$MONGODB_PORT"
  ((${#services[@]})) || return 0
  say "docker compose: starting ${services[*]} (log: $log)"
  if ! compose up -d "${services[@]}" >>"$log" 2>&1; then
    warn "docker compose up -d ${services[*]} failed; last lines of $log:"
    tail -n 30 "$log" >&2 || true
    return 1
  fi
  deadline=$((SECONDS + CONTAINER_WAIT_SECS))
  for i in "${!services[@]}"; do
    until container_ready "${services[i]}" "${ports[i]}"; do
      if ((SECONDS >= deadline)); then
        compose logs --tail 30 "${services[i]}" >>"$log" 2>&1 || true
        warn "docker compose: ${services[i]} not ready after ${CONTAINER_WAIT_SECS}s; last lines of $log:"
        tail -n 30 "$log" >&2 || true
        return 1
      fi
      sleep 1
    done
    say "${services[i]} (${ports[i]}): started in a container"
  done
}

# Stops this project's containers (their volumes, and so the data, are kept).
down_compose() {
  docker_usable || return 0
  [[ -n $(compose ps -q 2>/dev/null) ]] || return 0
  compose down && say "docker compose: containers stopped (volumes kept)"
}

# ---------------------------------------------------------------- commands

print_env() {
  cat <<EOF
export SATCHEL_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export SATCHEL_REDIS_CLUSTER_URL=redis+cluster://127.0.0.1:${CLUSTER_PORTS[0]},127.0.0.1:${CLUSTER_PORTS[1]},127.0.0.1:${CLUSTER_PORTS[2]}
export SATCHEL_REDIS_SENTINEL_URL=redis+sentinel://127.0.0.1:$SENTINEL_PORT/$SENTINEL_NAME
export SATCHEL_MEMCACHED_URL=memcache://127.0.0.1:${MEMCACHED_PORTS[0]}
export SATCHEL_MEMCACHED2_URL=memcache://127.0.0.1:${MEMCACHED_PORTS[1]}
export SATCHEL_POSTGRES_URL=$POSTGRES_URL
export SATCHEL_MYSQL_URL=$MYSQL_URL
export SATCHEL_MONGODB_URL=$MONGODB_URL
EOF
}

cmd_up() {
  local t0=$SECONDS
  mkdir -p "$STATE"
  resolve_mode
  say "services.sh: shared servers from ${SERVICES_MODE/docker/Docker Compose} (SATCHEL_SERVICES=${SATCHEL_SERVICES:-auto})"
  ensure_packages
  if [[ $SERVICES_MODE == docker ]] && ! up_compose; then
    [[ ${SATCHEL_SERVICES:-auto} == auto ]] ||
      die "docker compose could not start the servers (SATCHEL_SERVICES=native runs them from Debian packages)"
    warn "falling back to native servers from Debian packages"
    SERVICES_MODE=native
    ensure_packages
  fi
  if skipped REDIS; then
    say "redis, redis-cluster, redis-sentinel: skipped (SATCHEL_SKIP_REDIS)"
  else
    up_redis
    up_redis_cluster
    up_redis_sentinel
  fi
  if skipped MEMCACHED; then say "memcached: skipped (SATCHEL_SKIP_MEMCACHED)"; else up_memcached; fi
  if skipped POSTGRES; then say "postgres: skipped (SATCHEL_SKIP_POSTGRES)"; else up_postgres; fi
  if skipped MYSQL; then say "mysql: skipped (SATCHEL_SKIP_MYSQL)"; else up_mysql; fi
  if skipped MONGODB; then say "mongodb: skipped (SATCHEL_SKIP_MONGODB)"; else up_mongodb; fi
  print_env >"$STATE/env.sh"
  say "services.sh: up in $((SECONDS - t0))s; env also in $STATE/env.sh"
  print_env
}

cmd_down() {
  local port
  down_compose
  # Sentinel first: stopping its master while it watches would trigger a failover.
  stop_pidfile "redis-sentinel $SENTINEL_PORT" "$STATE/redis-$SENTINEL_PORT/redis.pid"
  for port in "$SENTINEL_REPLICA_PORT" "$SENTINEL_MASTER_PORT" "$REDIS_PORT" "${CLUSTER_PORTS[@]}"; do
    stop_pidfile "redis $port" "$STATE/redis-$port/redis.pid"
  done
  for port in "${MEMCACHED_PORTS[@]}"; do
    stop_pidfile "memcached $port" "$STATE/memcached-$port/memcached.pid"
  done
  resolve_pg_dir
  # SIGINT = postgres "fast" shutdown (SIGTERM would wait for clients to leave)
  stop_pidfile "postgres $POSTGRES_PORT" "$PG_DIR/data/postmaster.pid" INT
  stop_pidfile "mysql $MYSQL_PORT" "$MY_DIR/mariadbd.pid"
  stop_pidfile "mongodb $MONGODB_PORT" "$MONGO_DIR/secantusd.pid"
}

status_line() {
  local name=$1 port=$2 pidfile=$3 extra=${4:-} state owner=""
  if port_open "$port"; then state=up; else state=down; fi
  if pid_alive "$pidfile"; then owner=" (pid $(pid_of "$pidfile"), started by services.sh)"; fi
  printf '%-24s %-6s %-5s%s%s\n' "$name" "$port" "$state" "$owner" "${extra:+ $extra}"
}

cmd_status() {
  local port extra
  status_line redis "$REDIS_PORT" "$STATE/redis-$REDIS_PORT/redis.pid"
  for port in "${CLUSTER_PORTS[@]}"; do
    extra=$(rcli -p "$port" cluster info 2>/dev/null | grep '^cluster_state:' | tr -d '\r' || true)
    status_line "redis-cluster node" "$port" "$STATE/redis-$port/redis.pid" "$extra"
  done
  for port in "$SENTINEL_MASTER_PORT" "$SENTINEL_REPLICA_PORT"; do
    extra=$(rcli -p "$port" role 2>/dev/null | head -n 1 || true)
    status_line "redis-sentinel data" "$port" "$STATE/redis-$port/redis.pid" "${extra:+role:$extra}"
  done
  extra=$(rcli -p "$SENTINEL_PORT" sentinel get-master-addr-by-name "$SENTINEL_NAME" 2>/dev/null | paste -sd: || true)
  status_line redis-sentinel "$SENTINEL_PORT" "$STATE/redis-$SENTINEL_PORT/redis.pid" "${extra:+master:$extra}"
  for port in "${MEMCACHED_PORTS[@]}"; do
    status_line memcached "$port" "$STATE/memcached-$port/memcached.pid"
  done
  resolve_pg_dir
  status_line postgres "$POSTGRES_PORT" "$PG_DIR/data/postmaster.pid"
  status_line mysql "$MYSQL_PORT" "$MY_DIR/mariadbd.pid"
  status_line mongodb "$MONGODB_PORT" "$MONGO_DIR/secantusd.pid"
  if docker_usable && [[ -n $(compose ps -q 2>/dev/null) ]]; then
    say "docker compose project $COMPOSE_PROJECT:"
    compose ps
  fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) print_env ;;
  *) die "usage: $0 up|down|status|env" ;;
esac
