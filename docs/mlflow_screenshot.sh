#!/usr/bin/env bash
# The README's screenshots of the MLflow UI over a results folder's store, taken by headless Chromium (Debian's
# `chromium`) from `mlflow server` on a spare loopback port.
#   Usage: docs/mlflow_screenshot.sh [RESULTS] [EXPERIMENT]      (defaults: results/ and the experiment `default`)
#   DATASET=cifar10 (the cells shown), PORT=5099, BUDGET=30000 (ms of virtual time a page gets to render),
#   OUT=docs (where the PNGs go).
# Writes docs/mlflow-runs.png (the cell runs with metric columns), docs/mlflow-grouped.png (grouped by strategy),
# docs/mlflow-charts.png (test_acc_mean per strategy) and docs/mlflow-report.png (the summary run's report).
#
# The server reads a copy of the store, never the store itself: the views (filter, columns, Group by, charts) are
# MLflow "shared views", experiment tags `mlflow.sharedViewState.<key>` that `?viewStateShareKey=<key>` opens, and
# they are written into the copy only. Artifacts are read where the runs logged them.
# The page is opened as mlflow.localhost (Chromium resolves *.localhost to loopback): on 127.0.0.1 or localhost the
# UI opens its assistant panel over the page on a first visit.
set -euo pipefail
cd "$(dirname "$0")/.."
results=$(realpath "${1:-results}")
experiment=${2:-default}
port=${PORT:-5099}
out=${OUT:-docs}
host=mlflow.localhost
[ -f "$results/mlflow.db" ] || { echo "no $results/mlflow.db" >&2; exit 1; }
work=$(mktemp -d)
server=
cleanup() { if [ -n "$server" ]; then kill -- "-$server" 2> /dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
cp "$results/mlflow.db" "$work/"
if [ -f "$results/mlflow.db-wal" ]; then cp "$results/mlflow.db-wal" "$work/"; fi

# Write the shared views into the copy; print the ids the URLs need as shell assignments.
vars=$(DATASET=${DATASET:-cifar10} .venv/bin/python - "$work/mlflow.db" "$experiment" <<'EOF'
import json, os, sys
from mlflow import MlflowClient

db, name = sys.argv[1:]
dataset = os.environ["DATASET"]
client = MlflowClient(tracking_uri=f"sqlite:///{db}")
exp = client.get_experiment_by_name(name)
if exp is None:
    sys.exit(f"no experiment {name!r} in {db}")
where = f"tags.stage = 'cell' and tags.dataset = '{dataset}'"
cells = client.search_runs([exp.experiment_id], where, max_results=5000)
if not cells:
    sys.exit(f"no cell runs of {dataset} in {name!r}")
summary = client.search_runs([exp.experiment_id], "tags.stage = 'summary'", max_results=1)
if not summary:
    sys.exit(f"experiment {name!r} has no summary run")
artifacts = {a.path for a in client.list_artifacts(summary[0].info.run_id)}
report = "report.html" if "report.html" in artifacts else "report.md"

metrics = [f"metrics.`{m}`" for m in ("test_acc_mean", "test_acc_std", "test_macro_f1_mean", "gain_over_scratch")]
tags = [f"tags.`{t}`" for t in ("strategy", "budget")]
columns = {
    "selectedColumns": tags + metrics,
    "columnOrder": ["attributes.`Run Name`", *metrics, *tags],
    "columnWidths": {
        "attributes.`Run Name`": 350, **dict.fromkeys(metrics, 135), "tags.`strategy`": 130, "tags.`budget`": 70
    },
}
facets = {"searchFilter": where, "orderByKey": "tags.`mlflow.runName`", "orderByAsc": True}
facets["runsHiddenMode"] = "SHOW_ALL"  # every group in the charts, not the first 10
strategies = sorted({r.data.tags["strategy"] for r in cells})
by_strategy = {
    "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "strategy"}]},
    "groupsExpanded": {f"tag.strategy.{s}": False for s in strategies},  # one row a strategy: its mean
    "orderByKey": "metrics.`test_acc_mean`",
    "orderByAsc": False,
}
section = "readme-metrics"
charts = {
    "compareRunSections": [{"uuid": section, "name": "Model metrics", "display": True, "isReordered": False,
                            "deleted": False, "isGenerated": False, "columns": 1, "cardHeight": 640}],
    "compareRunCharts": [{"uuid": "readme-test-acc", "type": "BAR", "metricKey": "test_acc_mean",
                          "displayName": "test_acc_mean", "runsCountToCompare": 100, "metricSectionId": section,
                          "deleted": False, "isGenerated": False}],
    "isAccordionReordered": True,
    "useGroupedValuesInCharts": True,
    "chartsSearchFilter": "test_acc_mean",  # the other metrics' charts are generated too: shown only when asked
}
views = {
    "readme-runs": {**facets, **columns},
    "readme-grouped": {**facets, **columns, **by_strategy},
    "readme-charts": {**facets, **columns, **by_strategy, **charts},
}
for key, state in views.items():
    client.set_experiment_tag(exp.experiment_id, f"mlflow.sharedViewState.{key}", json.dumps(state))
print(f"exp={exp.experiment_id} summary={summary[0].info.run_id} report={report}")
EOF
)
eval "$vars"

MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid .venv/bin/mlflow server --backend-store-uri "sqlite:///$work/mlflow.db" \
  --host 127.0.0.1 --port "$port" --workers 1 --allowed-hosts "$host:$port" \
  --cors-allowed-origins "http://$host:$port" > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 90); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
curl -sf "http://127.0.0.1:$port/health" > /dev/null || { cat "$work/server.log" >&2; exit 1; }

shot() {  # shot OUT FRAGMENT: a screenshot of the app at #FRAGMENT, in a fresh browser profile
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$work/profile-$1" --hide-scrollbars \
    --window-size=1600,1000 --virtual-time-budget="${BUDGET:-30000}" --screenshot="$out/$1" \
    "http://$host:$port/#$2" 2> /dev/null
  echo "wrote $out/$1"
}
ml=workflowType=machine_learning  # the model-training view: MLflow 3 opens experiments in its GenAI view otherwise
shot mlflow-runs.png "/experiments/$exp/runs?$ml&viewStateShareKey=readme-runs"
shot mlflow-grouped.png "/experiments/$exp/runs?$ml&viewStateShareKey=readme-grouped"
shot mlflow-charts.png "/experiments/$exp/runs?$ml&compareRunsMode=CHART&viewStateShareKey=readme-charts"
# The viewer puts report.html in an iframe whose blob URL it makes anew at each render, so a screenshot can catch it
# blank: taken again until the viewer's pane shows text (report.md, rendered as markdown, does not need this).
drawn() {
  .venv/bin/python -c "import sys; from PIL import Image
pane = Image.open(sys.argv[1]).convert('L').crop((600, 250, 1500, 900))
sys.exit(sum(p < 128 for p in pane.get_flattened_data()) < 2000)" "$out/mlflow-report.png"
}
for try in 1 2 3 4 5 6; do
  shot mlflow-report.png "/experiments/$exp/runs/$summary/artifacts/$report?$ml"
  drawn && break
  if [ "$try" = 6 ]; then echo "warning: $out/mlflow-report.png still shows no $report" >&2; else echo "  again"; fi
done
