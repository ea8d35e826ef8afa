#!/usr/bin/env bash
# Installs what is missing (.venv, .venv-vllm, Debian's chromium), then runs the whole suite.
# Extra arguments go to pytest, e.g. ./run_tests.sh tests/unit -q
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
es_setup_main_env test
es_setup_chromium
es_setup_vllm_env
es_setup_postgres
export ENGINESCOPE_CHROMIUM="${ENGINESCOPE_CHROMIUM:-/usr/bin/chromium}"
exec .venv/bin/python -m pytest "$@"
