#!/usr/bin/env bash
# docs/cluster.md, step by step, on one machine: a PostgreSQL server, an MLflow tracking server over it, a Ray
# cluster of two nodes (a head and a worker node, as on two machines), and `bench run --ray` on them.
#
#   docs/cluster_local.sh EXPERIMENT_FILE [COMMAND ...]
#
# COMMAND (optional) runs after the benchmark and before the teardown, with MLFLOW_TRACKING_URI and
# TRANSFERBENCH_OPTUNA_STORAGE pointing at the servers, e.g. to look at the stores. Everything this script starts
# is stopped at exit by its own PID, and its temporary folder removed; results go to --results as usual
# (TRANSFERBENCH_RESULTS). Settings: WORKER_GPUS (logical GPUs of the worker node, default 0), BIN (default
# .venv/bin), KEEP=1 keeps the temporary folder (server logs).
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,12p' "$0"; exit 2; }
experiment=$1
shift
BIN=${BIN:-.venv/bin}
PG_BIN=$(pg_config --bindir)
work=$(mktemp -d "${TMPDIR:-/tmp}/transferbench-cluster.XXXXXX")
chmod 755 "$work"
pids=()

free_port() { "$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# PostgreSQL refuses to run as root: as root, its programs run as the postgres user
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
wait_for() {  # wait_for SECONDS COMMAND...: until COMMAND succeeds
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { echo "error: timed out waiting for: $*" >&2; return 1; }
    sleep 0.5
  done
}
stop() {
  set +e
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  [ -f "$work/pg/postmaster.pid" ] && as_postgres "$PG_BIN/pg_ctl -D $work/pg -m fast -w stop" >/dev/null
  [ "${KEEP:-0}" = 1 ] && echo "kept $work" || rm -rf "$work"
}
trap stop EXIT

echo "== 1. PostgreSQL: one database for MLflow, one for Optuna"
pg_port=$(free_port)
mkdir "$work/pg"
if [ "$(id -u)" = 0 ]; then chown postgres "$work/pg"; fi
as_postgres "$PG_BIN/initdb -D $work/pg -U bench --auth=trust -E UTF8" >/dev/null
as_postgres "$PG_BIN/pg_ctl -D $work/pg -l $work/pg/server.log -w start \
  -o '-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1'" >/dev/null
for db in mlflow optuna; do as_postgres "$PG_BIN/createdb -h 127.0.0.1 -p $pg_port -U bench $db"; done
optuna_storage=postgresql://bench@127.0.0.1:$pg_port/optuna

echo "== 2. MLflow tracking server over PostgreSQL, artifacts through its proxy"
mlflow_port=$(free_port)
# one machine: one server worker (MLflow's default is 4), and no job runner (GenAI jobs; 1.3 GB instead of 3.1)
MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$BIN/mlflow" server --workers 1 \
  --host 127.0.0.1 --port "$mlflow_port" \
  --backend-store-uri "postgresql://bench@127.0.0.1:$pg_port/mlflow" \
  --artifacts-destination "$work/artifacts" >"$work/mlflow.log" 2>&1 &
pids+=($!)
tracking_uri=http://127.0.0.1:$mlflow_port
wait_for 120 "$BIN/python" -c "import urllib.request; urllib.request.urlopen('$tracking_uri/health')"

echo "== 3. Ray: a head node, then a worker node joining it (one CPU each)"
ray_port=$(free_port)
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=${RAY_AUTH_TOKEN:-$("$BIN/python" -c 'import secrets; print(secrets.token_hex(32))')}
export RAY_USAGE_STATS_ENABLED=0
"$BIN/ray" start --head --block --node-ip-address 127.0.0.1 --port "$ray_port" --num-cpus 1 \
  --include-dashboard false >"$work/ray-head.log" 2>&1 &
pids+=($!)
# the head's port first (bash alone): `ray status` asked before it listens retries for about 40 s
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for 60 port_open "$ray_port"
wait_for 60 "$BIN/ray" status --address "127.0.0.1:$ray_port"
"$BIN/ray" start --block --node-ip-address 127.0.0.1 --address "127.0.0.1:$ray_port" --num-cpus 1 \
  --num-gpus "${WORKER_GPUS:-0}" >"$work/ray-worker.log" 2>&1 &
pids+=($!)
two_nodes() { "$BIN/ray" status --address "127.0.0.1:$ray_port" | grep -c '^ *1 node_' | grep -qx 2; }
wait_for 60 two_nodes

echo "== 4. bench run on the cluster, with the stores every node reaches"
"$BIN/bench" run "$experiment" --ray "127.0.0.1:$ray_port" --tracking-uri "$tracking_uri" \
  --optuna-storage "$optuna_storage"

if [ $# -gt 0 ]; then
  echo "== 5. $*"
  MLFLOW_TRACKING_URI=$tracking_uri TRANSFERBENCH_OPTUNA_STORAGE=$optuna_storage "$@"
fi
