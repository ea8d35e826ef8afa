#!/bin/bash
# Run HERE (no GPU), from the repository root, before the device calls of gpu_engines.sh: downloads the pure-Python
# (and cp312 manylinux) wheels EngineScope needs that the H200 image may lack into .whl/ (git-ignored; carried with
# the working tree, ~12 MB). On the device, ort_env.sh installs only those whose module does not already import.
# onnxruntime-gpu itself is staged separately: ../shared/tools/ort-gpu-on-h200 (prepare.sh, next_part.sh).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d .whl \
  'sqlalchemy==2.1.9' 'alembic==1.20.1' 'mako==1.4.3' 'onnxconverter-common==1.16.0' \
  'typer>=0.12,<1' 'click>=8,<9' 'shellingham>=1.5,<2' 'rich>=13,<15' 'markdown-it-py>=3,<5' 'mdurl>=0.1,<1' \
  'pydantic>=2.7,<3' 'pydantic-core' 'annotated-types>=0.6' 'typing-inspection>=0.4' 'psutil>=5.9,<8' \
  'nvidia-ml-py>=12,<14' 'pygments>=2.13,<3'
ls -la .whl; du -sh .whl
