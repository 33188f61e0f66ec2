#!/usr/bin/env bash
# Screenshot of the MLflow UI over a run's store, for the README: headless Chromium (Debian's `chromium`)
# against `mlflow ui` on a spare port. Usage: docs/mlflow_screenshot.sh [URL-fragment] [out.png]
set -euo pipefail
cd "$(dirname "$0")/.."
fragment=${1:-"/experiments/1/runs"}
out=${2:-docs/mlflow-ui.png}
port=5099
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false .venv/bin/mlflow ui --backend-store-uri "sqlite:///$PWD/results/mlflow.db" \
  --host 127.0.0.1 --port "$port" > /tmp/mlflow-ui.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; pkill -f "port $port" 2>/dev/null || true' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --hide-scrollbars \
  --window-size=1600,1000 --virtual-time-budget=20000 --screenshot="$out" "http://127.0.0.1:$port/#$fragment"
echo "wrote $out"
