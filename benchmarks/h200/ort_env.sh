# Sourced on the H200 device by gpu_engines.sh: onnxruntime-gpu from /tmp/ortsite (staged with
# ../shared/tools/ort-gpu-on-h200), EngineScope from the working tree, and the wheels of .whl/
# (prepare_gpu_engines.sh) whose module the image lacks, into /tmp/eswhl. Sets PYTHONPATH and ENGINESCOPE_HOME.
set -u
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
if [[ ! -d /tmp/ortsite/onnxruntime ]]; then
  if [[ -f /tmp/ortstage/on_device.sh ]]; then bash /tmp/ortstage/on_device.sh || return 3
  else echo "onnxruntime-gpu is not staged: run ../shared/tools/ort-gpu-on-h200 (README) first"; return 3; fi
fi
if [[ ! -f /tmp/eswhl/.done ]]; then
  mkdir -p /tmp/eswhl
  python3 - <<'PY'
import glob, importlib.util, subprocess, sys
# wheel distribution -> the module that proves the image already has it
mods = {"sqlalchemy": "sqlalchemy", "alembic": "alembic", "mako": "mako", "onnxconverter_common": "onnxconverter_common",
        "typer": "typer", "click": "click", "shellingham": "shellingham", "rich": "rich", "markdown_it_py": "markdown_it",
        "mdurl": "mdurl", "pydantic": "pydantic", "pydantic_core": "pydantic_core", "annotated_types": "annotated_types",
        "typing_inspection": "typing_inspection", "psutil": "psutil", "nvidia_ml_py": "pynvml",
        "pygments": "pygments"}
todo = []
for whl in sorted(glob.glob(".whl/*.whl")):
    dist = whl.split("/")[-1].split("-")[0].lower()
    mod = mods.get(dist)
    if mod is None or importlib.util.find_spec(mod) is None:
        todo.append(whl)
# pydantic and pydantic_core must come as a pair
if any("pydantic-" in w or "pydantic_core" in w for w in todo):
    todo = sorted(set(todo) | {w for w in glob.glob(".whl/*.whl") if w.split("/")[-1].startswith(("pydantic-", "pydantic_core-"))})
print("installing into /tmp/eswhl:", [w.split("/")[-1] for w in todo] or "nothing")
if todo:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", "/tmp/eswhl", *todo], check=True)
PY
  [[ $? == 0 ]] || return 3
  touch /tmp/eswhl/.done
fi
export PYTHONPATH="$PWD:/tmp/eswhl:/tmp/ortsite"
export ENGINESCOPE_HOME=/tmp/esgpu
unset ENGINESCOPE_DB_URL
ES=(python3 -m engine_runner.cli)
