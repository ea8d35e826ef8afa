"""Check engine_runner.gpu against a real NVIDIA driver (run on the H200 device): snapshot, pre-flight with a
foreign process holding 40 GiB, memory returned after it exits. Prints what it saw; no timing claims."""
import json, subprocess, sys, time
from engine_runner import gpu
print("nvml", gpu.nvml_available())
before = gpu.snapshot()
print("before", json.dumps([s.as_dict() for s in before])[:600])
print("preflight clean", gpu.preflight(before, requested_fraction=0.9))
# a foreign process holding 40 GiB
holder = subprocess.Popen([sys.executable, "-c", "import torch,time; x=torch.empty(40*2**30, dtype=torch.uint8, device='cuda'); print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
holder.stdout.readline()
mid = gpu.snapshot()
print("during", [(s.used_bytes >> 20, [(p.pid, (p.used_bytes or 0) >> 20, p.name) for p in s.processes]) for s in mid])
r = gpu.preflight(mid, requested_fraction=0.9)
print("preflight with holder", r.ok, r.refuse_reason, r.warnings)
print("dirty while held", gpu.memory_check(before, mid).dirty, gpu.memory_check(before, mid).message())
holder.kill(); holder.wait()
t = time.monotonic()
while True:
    after = gpu.snapshot()
    chk = gpu.memory_check(before, after)
    if not chk.dirty or time.monotonic() - t > 10: break
    time.sleep(0.5)
print("after kill", round(time.monotonic() - t, 2), "s", chk.dirty, chk.message(), chk.per_device)
