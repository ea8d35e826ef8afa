# Sourced on the H200 device (see README.md here): EngineScope from the working tree, its missing
# dependencies from .whl, vLLM 0.25.1 from /tmp/site (staged with ../shared/tools/vllm-on-h200).
set -u
export PYTHONUNBUFFERED=1
if [[ ! -d /tmp/eswhl/sqlalchemy ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/eswhl .whl/*.whl || exit 1
fi
export PYTHONPATH="$PWD:/tmp/eswhl:/tmp/site"
export VLLM_USE_FLASHINFER_SAMPLER=0          # flashinfer is not carried (recipe's known trap)
export ENGINESCOPE_VLLM_PYTHON="$(command -v python3)"
export ENGINESCOPE_HOME=/tmp/eshome
MODEL=/tmp/stage/model
ES=(python3 -m engine_runner.cli)
gpu_mem() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }
