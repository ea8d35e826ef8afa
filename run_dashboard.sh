#!/usr/bin/env bash
# Installs what is missing, applies migrations, starts the worker in the background and serves the
# dashboard. Port: --port N, else $ENGINESCOPE_PORT, else 8501. Data: $ENGINESCOPE_HOME (~/.enginescope).
set -euo pipefail
cd "$(dirname "$0")"
PORT="${ENGINESCOPE_PORT:-8501}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --port=*) PORT="${1#--port=}"; shift ;;
    -h|--help) sed -n '2,3p' "$0"; exit 0 ;;
    *) echo "run_dashboard.sh: unknown argument $1 (expected --port N)" >&2; exit 2 ;;
  esac
done
source scripts/bootstrap.sh
es_setup_main_env
es_setup_vllm_env
.venv/bin/enginescope migrate
# the address report links name (Reports page, Compare's "Save as report"); set it to the URL colleagues use
export ENGINESCOPE_DASHBOARD_URL="${ENGINESCOPE_DASHBOARD_URL:-http://localhost:$PORT}"
.venv/bin/enginescope worker &
WORKER_PID=$!
trap 'kill -TERM $WORKER_PID 2>/dev/null; wait $WORKER_PID 2>/dev/null || true' EXIT INT TERM
echo "[dashboard] worker pid $WORKER_PID; serving on http://localhost:$PORT"
.venv/bin/python -m streamlit run dashboard/app.py --server.port "$PORT" --server.headless true \
  --browser.gatherUsageStats false
