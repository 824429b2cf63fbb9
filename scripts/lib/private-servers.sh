# Sourced by scripts/bench and scripts/soak: the throwaway redis-server and
# PostgreSQL they measure against (never the machine's own servers), and
# the process helpers both need. The caller defines log and die, and sets
# TMP, PGDIR, PRIO and AS_PG (see either script) before start_redis and
# start_postgres.

# The path of PostgreSQL's program $1: on PATH, or the newest under
# /usr/lib/postgresql (Debian keeps them off PATH).
pg_binary() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return 0; fi
  compgen -G "/usr/lib/postgresql/*/bin/$1" | sort -V | tail -n 1 | grep . || return 1
}

stop_pid() { # pid signal: signal, wait up to 30 s, then SIGKILL
  local pid=$1 signal=$2 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -s "$signal" "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -s KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Sets PORT to a loopback port nothing listens on and this script has not
# handed out before (a global, not an echo: a $(…) subshell would forget
# it). Ports below Linux's ephemeral range (32768 and up): an outgoing
# connection of another program cannot take one between the check and the
# bind.
USED_PORTS=" "
free_port() {
  while :; do
    PORT=$((20000 + RANDOM % 12000))
    [[ $USED_PORTS == *" $PORT "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      USED_PORTS+="$PORT "
      return
    fi
  done
}

wait_for() { # seconds pid description command...: poll until command succeeds
  local seconds=$1 pid=$2 what=$3 i
  shift 3
  for ((i = 0; i < seconds * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { log "$what exited during start-up"; return 1; }
    sleep 0.1
  done
  log "$what not ready after ${seconds}s"
  return 1
}

# Starts redis-server (no persistence) in $TMP/redis; sets REDIS_PORT,
# REDIS_PID and REDIS_URL. Started from the caller's shell (nice execs),
# so $! is the server's own pid.
start_redis() {
  free_port
  REDIS_PORT=$PORT
  mkdir "$TMP/redis"
  "${PRIO[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$TMP/redis" --logfile "$TMP/redis.log" --daemonize no &
  REDIS_PID=$!
  wait_for 20 "$REDIS_PID" redis-server bash -c "exec 3<>/dev/tcp/127.0.0.1/$REDIS_PORT" \
    || { tail -n 20 "$TMP/redis.log" >&2; die "redis-server did not start"; }
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  log "redis-server on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID)"
}

# Creates a cluster in $PGDIR (trust auth, no fsync) and starts it with a
# database `anigo`; sets PG_PORT, PG_PID, DATABASE_URL, and INITDB,
# POSTGRES and PSQL (the programs). As root, AS_PG runs it as `postgres`.
start_postgres() {
  INITDB=$(pg_binary initdb) POSTGRES=$(pg_binary postgres) PSQL=$(pg_binary psql)
  free_port
  PG_PORT=$PORT
  (cd "$PGDIR" && exec "${AS_PG[@]}" "$INITDB" -D "$PGDIR/data" -A trust -U postgres --no-sync -E UTF8 --locale=C) \
    >"$TMP/initdb.log" 2>&1 || { tail -n 30 "$TMP/initdb.log" >&2; die "initdb failed"; }
  # Nice and setpriv exec, so $! is the postmaster's own pid.
  "${PRIO[@]}" "${AS_PG[@]}" "$POSTGRES" -D "$PGDIR/data" -p "$PG_PORT" -k "$PGDIR" \
    -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off -c max_connections=200 </dev/null >"$TMP/postgres.log" 2>&1 &
  PG_PID=$!
  pg_ready() { "$PSQL" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1'; }
  wait_for 30 "$PG_PID" PostgreSQL pg_ready \
    || { tail -n 30 "$TMP/postgres.log" >&2; die "PostgreSQL did not start"; }
  "$PSQL" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc 'create database anigo' >/dev/null
  DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/anigo"
  log "PostgreSQL on 127.0.0.1:$PG_PORT (pid $PG_PID)"
}
