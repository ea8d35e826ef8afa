"""AppTests of the Kernels page (dashboard/app_pages/kernels.py) against a migrated SQLite database holding kernel
timelines stored through ``db.kernels.store_trace`` (fp32 and fp16 captures of one small conv + attention net:
3 measured iterations, two CUDA streams, copies, a memset, nested NVTX ranges) and Nsight Compute rows stored
through ``db.kernels.store_ncu`` with roofline ceilings as RunMetric rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.dashboard.conftest import Seeded, page
from tests.dashboard.test_pages import _frame, _texts

# A real-looking long C++ name (PyTorch's vectorized elementwise kernel as CUPTI demangles it).
RELU = ("void at::native::vectorized_elementwise_kernel<4, at::native::(anonymous namespace)::launch_clamp_scalar("
        "at::TensorIteratorBase&, c10::Scalar, c10::Scalar, at::native::detail::ClampLimits)::{lambda()#1}::operator()"
        "() const::{lambda()#7}::operator()() const::{lambda(float)#1}, std::array<char*, 2ul> >(int, "
        "at::native::(anonymous namespace)::launch_clamp_scalar(at::TensorIteratorBase&, c10::Scalar, c10::Scalar, "
        "at::native::detail::ClampLimits)::{lambda()#1}::operator()() const::{lambda()#7}::operator()() const::"
        "{lambda(float)#1}, std::array<char*, 2ul>)")
CONV32 = "void cudnn::cnn::implicit_convolve_sgemm<float, float, 1024, 5, 5, 3, 3, 3, 1, false, false, true>(int, int, int, float const*, int, float*, float const*, kernel_conv_params, unsigned long long, int, float, float, int, float const*, float const*, bool, int, int)"
CONV16 = "sm90_xmma_fprop_implicit_gemm_f16f16_f16f32_f32_nhwckrsc_nhwc_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_kernel__5x_cudnn"
GEMM32 = "ampere_sgemm_128x64_nn"
GEMM16 = "sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_kernel__5x_cublas"
SOFTMAX = "fmha_cutlassF_f32_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel<float, cutlass::arch::Sm80, true, 64, 64, 64, true, true>::Params)"
FLASH = "void pytorch_flash::flash_fwd_kernel<pytorch_flash::Flash_fwd_kernel_traits<64, 128, 128, 4, false, false, cutlass::half_t, pytorch_flash::Flash_kernel_traits<64, 128, 128, 4, cutlass::half_t> >, false, false, false, false, true, true, false, false>(pytorch_flash::Flash_fwd_params)"
REDUCE = "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps<float, float, float, float>, unsigned int, float, 4> >(at::native::ReduceOp<float, at::native::MeanOps<float, float, float, float>, unsigned int, float, 4>)"

ITERATIONS = 3
ITER_NS = 1_000_000  # each iteration starts 1 ms after the previous one


def make_trace(precision: str) -> Any:
    """A KernelTrace of 3 measured iterations: per iteration an HtoD copy, conv, relu, attention and GEMM kernels on
    stream 7, a memset and a reduction on stream 13 (overlapping the GEMM), a DtoH copy; NVTX ``iteration N``
    ranges with op ranges nested inside; gaps of 5-40 µs between kernels (the GPU idles)."""
    from profiles.kernels import GpuActivity, KernelTrace, Range

    fp16 = precision == "fp16"
    # (name, kind, stream, duration ns, op, gap before ns, copy_kind, bytes)
    plan = [
        ("Memcpy HtoD (Pageable -> Device)", "memcpy", 7, 12_000, None, 0, "HtoD", 98_304),
        (CONV16 if fp16 else CONV32, "kernel", 7, 60_000 if fp16 else 150_000, "aten::conv2d", 20_000, None, None),
        (RELU, "kernel", 7, 6_000 if fp16 else 10_000, "aten::relu", 5_000, None, None),
        (FLASH if fp16 else SOFTMAX, "kernel", 7, 25_000 if fp16 else 45_000, "aten::scaled_dot_product_attention",
         5_000, None, None),
        (GEMM16 if fp16 else GEMM32, "kernel", 7, 30_000 if fp16 else 80_000, "aten::linear", 5_000, None, None),
        ("Memset (Device)", "memset", 13, 2_000, None, -60_000, None, 4096),  # overlaps the GEMM, other stream
        (REDUCE, "kernel", 13, 8_000, "aten::mean", 1_000, None, None),
        ("Memcpy DtoH (Device -> Pageable)", "memcpy", 7, 9_000, None, 40_000, "DtoH", 4_096),
    ]
    acts, ranges = [], []
    for it in range(ITERATIONS):
        t = 100_000 + it * ITER_NS
        ranges.append(Range(text=f"iteration {it}", start_ns=t - 50_000, end_ns=t + 500_000, thread_id=1))
        end_7 = t
        for name, kind, stream, dur, op, gap, ck, nbytes in plan:
            start = end_7 + gap
            a = GpuActivity(kind=kind, name=name, start_ns=start, duration_ns=dur, device=0, stream=stream,
                            launch_ns=t - 40_000 + len(acts) % 8 * 1_000, bytes=nbytes, copy_kind=ck, op=op,
                            iteration=it, grid=[128, 1, 1] if kind == "kernel" else None,
                            block=[256, 1, 1] if kind == "kernel" else None)
            acts.append(a)
            if op:
                ranges.append(Range(text=op, start_ns=a.launch_ns, end_ns=a.launch_ns + 800, thread_id=1))
            if stream == 7:
                end_7 = a.end_ns
    return KernelTrace(source_tool="torch.profiler", tool_version="2.11.0+cu130", schema_version="1.1.0",
                       origin_ns=1_764_000_000_000_000_000, activities=acts, ranges=ranges,
                       devices=[{"id": 0, "name": "NVIDIA H200"}],
                       notes=["CUDA API calls were not captured (activities only)"],
                       meta={"file": f"probe_{precision}.json"})


@dataclass
class KernelDb:
    url: str
    home: Path
    unprofiled: dict[str, int]  # precision -> unprofiled run id
    profiled: dict[str, int]  # precision -> profiled run id
    ncu_run: int
    traces: dict[str, Any]
    present_artifact: Path
    missing_artifact: str


PEAK = 787.9e12  # bf16 matmul FLOP/s measured on the H200 (tests/data/kernels/h200_probe_ceilings.json)
BW = 4.2645e12  # device copy bytes/s
NCU_METRICS = ["gpu__time_duration.sum", "sm__warps_active.avg.pct_of_peak_sustained_active",
               "dram__bytes_read.sum", "dram__bytes_write.sum"]


def ncu_kernel(name: str, short: str, category: str, dur_ns: int, flop: float | None, dram: float | None) -> Any:
    """An object with the attributes ``db.kernels.store_ncu`` reads (those of ``profiles.ncu.NcuKernel``)."""
    return SimpleNamespace(name=name, short_name=short, category=category, duration_ns=dur_ns,
                           achieved_occupancy_pct=48.5, sm_throughput_pct=71.0, dram_throughput_pct=22.5,
                           flop=flop, dram_bytes=dram, arithmetic_intensity=(flop / dram) if flop and dram else None,
                           flop_per_s=(flop / (dur_ns / 1e9)) if flop else None, grid=[132, 1, 1], block=[384, 1, 1],
                           metrics={"gpu__time_duration.sum": float(dur_ns), "dram__bytes_read.sum": dram or 0.0})


def seed_kernels(url: str, home: Path, ceilings: bool = True) -> KernelDb:
    """Unprofiled fp32/fp16 runs with latencies, their profiled runs (torch.profiler timelines), an ncu run of the
    fp16 model with 3 kernels and (``ceilings``) the roofline ceilings, two artifacts (one file missing)."""
    import numpy as np

    from db.kernels import profiled_label, profiler_config, store_ncu, store_trace
    from db.models import Artifact, LatencySample, Run, RunMetric, Summary
    from db.session import session_scope
    from profiles.stats import summarize_ns

    traces = {p: make_trace(p) for p in ("fp32", "fp16")}
    unprof: dict[str, int] = {}
    prof: dict[str, int] = {}
    with session_scope(url) as s:
        for p, med in (("fp32", 900_000), ("fp16", 450_000)):
            r = Run(engine="torch", engine_version="2.11.0", precision=p, batch_size=8, status="succeeded",
                    timing_window="CUDA events around the forward", config={"device": "cuda:0"})
            s.add(r)
            s.flush()
            samples = np.full(50, med, dtype=np.int64) + np.arange(50)
            s.add_all([LatencySample(run_id=r.id, seq=i, latency_ns=int(v)) for i, v in enumerate(samples)])
            s.add(Summary(run_id=r.id, metric="latency_ms", **summarize_ns(samples, "ms").as_dict()))
            unprof[p] = r.id
        for p, tr in traces.items():
            r = Run(engine="torch", engine_version="2.11.0", precision=p, batch_size=8, status="succeeded",
                    label=profiled_label(f"torch {p}", tr.source_tool),
                    config={"profiler": profiler_config(tr, of_run_id=unprof[p], iterations=ITERATIONS)})
            s.add(r)
            s.flush()
            prof[p] = r.id
        ncu = Run(engine="torch", precision="fp16", batch_size=8, status="succeeded", label=profiled_label("torch fp16", "ncu"),
                  config={"profiler": {"tool": "ncu", "version": "2025.3.1", "schema_version": None, "profiled": True,
                                       "notes": ["ncu ran with --clock-control none"], "of_run_id": unprof["fp16"]},
                          "ncu": {"metrics": NCU_METRICS, "clock_control": "none"},
                          **({"ceilings": {"source": "bf16 8192^3 torch.matmul and a device-to-device copy, CUDA "
                                                     "events, best of 5 (H200)"}} if ceilings else {})})
        s.add(ncu)
        s.flush()
        ncu_id = ncu.id
        if ceilings:
            s.add(RunMetric(run_id=ncu_id, name="ceiling_matrix_flop_per_s", value=PEAK, unit="flop/s"))
            s.add(RunMetric(run_id=ncu_id, name="ceiling_copy_bytes_per_s", value=BW, unit="bytes/s"))
        present = home / "artifacts" / "kernels" / "probe_fp32.json"
        present.parent.mkdir(parents=True, exist_ok=True)
        present.write_text(json.dumps({"traceEvents": []}))
        missing = "artifacts/kernels/report_fp32.sqlite"
        s.add(Artifact(run_id=prof["fp32"], kind="kineto_trace", path=str(present.relative_to(home)),
                       size_bytes=present.stat().st_size))
        s.add(Artifact(run_id=prof["fp32"], kind="nsys_sqlite", path=missing, size_bytes=123))
    for p, tr in traces.items():
        store_trace(prof[p], tr, url)
    store_ncu(ncu_id, [
        ncu_kernel(GEMM16, "sm90_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128x64", "gemm/conv", 30_000, 6.4e9, 3.2e7),
        ncu_kernel(FLASH, "flash_fwd_kernel", "attention", 25_000, 1.1e9, 2.0e7),
        ncu_kernel(RELU, "vectorized_elementwise_kernel", "elementwise/reduction", 6_000, 1.0e6, 8.0e6),
        ncu_kernel("void at::native::copy_kernel(int)", "copy_kernel", "elementwise/reduction", 3_000, None, 4.0e6),
    ], url)
    return KernelDb(url=url, home=home, unprofiled=unprof, profiled=prof, ncu_run=ncu_id, traces=traces,
                    present_artifact=present, missing_artifact=missing)


@pytest.fixture
def kdb(es_env: str) -> KernelDb:
    import os

    return seed_kernels(es_env, Path(os.environ["ENGINESCOPE_HOME"]))


def _figs(at) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """Plotly figures of the page by title."""
    out = {}
    for c in at.get("plotly_chart"):
        fig = json.loads(c.proto.spec)
        out[fig["layout"].get("title", {}).get("text", "")] = fig
    return out


def _run(kdb: KernelDb, **params: Any):  # type: ignore[no-untyped-def]
    at = page("kernels")
    for k, v in params.items():
        at.query_params[k] = str(v)
    at.run()
    assert not at.exception, at.exception
    return at


def test_empty_state_explains_how_to_profile(es_env: str) -> None:
    at = page("kernels").run()
    assert not at.exception
    text = _texts(at)
    assert "No profiled runs yet" in text
    assert "enginescope bench MODEL --device cuda:0 --profile-kernels 5" in text
    assert "enginescope import report.sqlite" in text


def test_header_top_kernels_categories_and_idle(kdb: KernelDb) -> None:
    at = _run(kdb, run=kdb.profiled["fp32"])
    assert at.selectbox(key="kernels_run").value == kdb.profiled["fp32"]
    text = _texts(at)
    assert "torch.profiler" in text and "2.11.0+cu130" in text and "NVIDIA H200" in text
    assert "profiled run" in text and "not the unprofiled latency" in text
    assert any("CUDA API calls were not captured" in i.value for i in at.info), [i.value for i in at.info]
    assert f"Explains **run {kdb.unprofiled['fp32']}**" in text
    top = _frame(at, "kernel", "share %", "full name")
    by_full = {row["full name"]: row for _, row in top.iterrows()}
    conv = by_full[CONV32]
    assert conv["count"] == ITERATIONS and conv["category"] == "gemm/conv"
    assert conv["total ms"] == pytest.approx(ITERATIONS * 0.150)
    assert conv["ms / iteration"] == pytest.approx(0.150)
    assert conv["ops"] == "aten::conv2d"
    assert top.iloc[0]["full name"] == CONV32  # largest total first
    relu = by_full[RELU]
    assert relu["kernel"] == "vectorized_elementwise_kernel" and relu["category"] == "elementwise/reduction"
    assert by_full[SOFTMAX]["category"] == "attention"
    assert by_full["Memcpy HtoD (Pageable -> Device)"]["category"] == "memcpy"
    assert top["share %"].sum() == pytest.approx(100.0)
    assert len(top) == 8

    figs = _figs(at)
    cat = figs["GPU time by kernel category"]
    from profiles.kernels import CATEGORIES

    assert list(cat["data"][0]["x"]) == list(CATEGORIES)
    y = dict(zip(cat["data"][0]["x"], cat["data"][0]["y"]))
    assert y["gemm/conv"] == pytest.approx(ITERATIONS * (0.150 + 0.080))
    assert y["attention"] == pytest.approx(ITERATIONS * 0.045)
    assert y["memcpy"] == pytest.approx(ITERATIONS * 0.021)
    assert y["memset"] == pytest.approx(ITERATIONS * 0.002)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Idle gaps"] == str(ITERATIONS * 6 + (ITERATIONS - 1))  # gaps inside and between iterations
    assert "launch-bound" in text


def test_timeline_lanes_iteration_window_and_nvtx(kdb: KernelDb) -> None:
    at = _run(kdb, run=kdb.profiled["fp32"])
    tl = _figs(at)["Timeline"]
    names = [t["name"] for t in tl["data"]]
    assert names[0] == "NVTX ranges"
    assert {"gemm/conv", "attention", "elementwise/reduction", "memcpy", "memset"} <= set(names)
    lanes = set()
    for t in tl["data"]:
        lanes |= set(t["y"])
    assert {"GPU 0 / stream 7", "GPU 0 / stream 13", "NVTX", "NVTX (nested 1)"} <= lanes
    bars = sum(len(t["x"]) for t in tl["data"] if t["name"] != "NVTX ranges")
    assert bars == 8  # iteration 0 only by default
    nvtx = next(t for t in tl["data"] if t["name"] == "NVTX ranges")
    assert "iteration 0" in nvtx["text"] and "iteration 1" not in nvtx["text"]
    assert at.number_input(key="kernels_iter_from").value == 0

    at.number_input(key="kernels_iter_to").set_value(2).run()
    assert not at.exception
    tl = _figs(at)["Timeline"]
    assert sum(len(t["x"]) for t in tl["data"] if t["name"] != "NVTX ranges") == 8 * ITERATIONS
    assert "iterations 0 to 2" in _texts(at)


def test_timeline_window_caps_bars_and_handles_no_iterations(kdb: KernelDb) -> None:
    from dashboard import data

    tr = kdb.traces["fp32"]
    w = data.timeline_window(tr, (0, 2), max_bars=5)
    assert len(w["activities"]) == 5 and w["total"] == 24 and w["dropped"] == 19
    assert w["cut_ns"] == sorted(a.start_ns for a in tr.activities)[5]
    for a in tr.activities:
        a.iteration = None
    w = data.timeline_window(tr, None, first_ms=0.5)
    assert w["total"] == 8  # the first iteration's activities lie within 0.5 ms of the first one


def test_query_param_of_lists_profiled_runs_of_that_run(kdb: KernelDb) -> None:
    at = _run(kdb, of=kdb.unprofiled["fp16"])
    sb = at.selectbox(key="kernels_run")
    assert sorted(int(o.split(":")[0].split()[1]) for o in sb.options) == sorted([kdb.profiled["fp16"], kdb.ncu_run])
    assert sb.value == max(kdb.profiled["fp16"], kdb.ncu_run)  # newest first
    assert f"Profiled runs explaining run {kdb.unprofiled['fp16']}" in _texts(at)
    at = _run(kdb, run=kdb.unprofiled["fp32"])  # ?run= of an unprofiled run lists its profiled runs
    assert at.selectbox(key="kernels_run").value == kdb.profiled["fp32"]
    assert len(at.selectbox(key="kernels_run").options) == 1
    at = _run(kdb, of=99_999)
    assert any("Run 99999 has no profiled run" in w.value for w in at.warning)


def test_diff_fp32_vs_fp16(kdb: KernelDb) -> None:
    at = _run(kdb, run=kdb.profiled["fp32"])
    at.selectbox(key="kernels_compare_run").set_value(kdb.profiled["fp16"]).run()
    assert not at.exception, at.exception
    diff = _frame(at, "change", "A ms / iteration", "B ms / iteration")
    by = {row["full name"]: row for _, row in diff.iterrows()}
    assert by[CONV32]["change"] == "disappeared" and by[CONV32]["B ms / iteration"] == 0
    assert by[CONV16]["change"] == "appeared" and by[CONV16]["B ms / iteration"] == pytest.approx(0.060)
    assert by[GEMM16]["change"] == "appeared" and by[FLASH]["change"] == "appeared"
    assert by[GEMM32]["change"] == "disappeared" and by[SOFTMAX]["change"] == "disappeared"
    assert by[RELU]["change"] == "faster"
    assert by[RELU]["A ms / iteration"] == pytest.approx(0.010) and by[RELU]["B ms / iteration"] == pytest.approx(0.006)
    assert by[RELU]["delta ms"] == pytest.approx(-0.004)
    assert by[REDUCE]["change"] == "unchanged"
    assert diff.iloc[0]["full name"] == CONV32  # largest |delta| first
    side = next(f for t, f in _figs(at).items() if t == "GPU time by kernel category" and len(f["data"]) == 2)
    a, b = side["data"]
    assert a["name"].startswith("A: run") and b["name"].startswith("B: run")
    ya, yb = dict(zip(a["x"], a["y"])), dict(zip(b["x"], b["y"]))
    assert ya["gemm/conv"] == pytest.approx(0.230) and yb["gemm/conv"] == pytest.approx(0.090)
    assert ya["attention"] == pytest.approx(0.045) and yb["attention"] == pytest.approx(0.025)
    assert "3 kernels appeared in B, 3 disappeared, 1 got faster" in _texts(at)


def test_ncu_table_and_roofline(kdb: KernelDb) -> None:
    at = _run(kdb, run=kdb.ncu_run)
    text = _texts(at)
    assert "This run holds no kernel timeline" in text
    assert any("clock-control none" in i.value for i in at.info)
    ncu = _frame(at, "achieved occupancy %", "achieved TFLOP/s")
    assert len(ncu) == 4
    g = ncu.iloc[0]
    assert g["duration µs"] == pytest.approx(30.0) and g["FLOP / byte"] == pytest.approx(200.0)
    assert g["achieved TFLOP/s"] == pytest.approx(6.4e9 / 30e-6 / 1e12)
    assert g["SM %"] == 71.0 and g["DRAM %"] == 22.5 and g["achieved occupancy %"] == 48.5
    roof = _figs(at)["Roofline (Nsight Compute)"]
    names = [t["name"] for t in roof["data"]]
    assert "kernels: gemm/conv" in names and "kernels: attention" in names and "kernels: elementwise/reduction" in names
    pts = sum(len(t["x"]) for t in roof["data"] if t["name"].startswith("kernels:"))
    assert pts == 3  # the copy kernel has no FLOP
    line = next(t for t in roof["data"] if t["name"].startswith("roof:"))
    assert max(line["y"]) == pytest.approx(PEAK)
    assert line["x"][1] == pytest.approx(PEAK / BW) and line["y"][0] == pytest.approx(BW * line["x"][0])
    ridge = next(t for t in roof["data"] if t["name"].startswith("ridge point"))
    assert ridge["x"][0] == pytest.approx(PEAK / BW)
    assert roof["layout"]["xaxis"]["type"] == "log" and roof["layout"]["yaxis"]["type"] == "log"
    assert "bf16 8192^3 torch.matmul" in text
    assert "1 of 4 kernels have no FLOP" in text
    assert "sm__warps_active.avg.pct_of_peak_sustained_active" in text


def test_roofline_without_ceilings_draws_no_roof(es_env: str) -> None:
    import os

    kdb = seed_kernels(es_env, Path(os.environ["ENGINESCOPE_HOME"]), ceilings=False)
    at = _run(kdb, run=kdb.ncu_run)
    roof = _figs(at)["Roofline (Nsight Compute)"]
    assert all(t["name"].startswith("kernels:") for t in roof["data"])
    assert any("ceilings are unknown" in i.value for i in at.info)


def test_downloads_and_missing_artifact_warning(kdb: KernelDb) -> None:
    at = _run(kdb, run=kdb.profiled["fp32"])
    buttons = at.get("download_button")
    assert len(buttons) == 1
    assert "probe_fp32.json" in buttons[0].proto.label
    warn = [w.value for w in at.warning if "missing" in w.value]
    assert warn and str(kdb.home / kdb.missing_artifact) in warn[0] and "nsys_sqlite" in warn[0]


def test_compare_and_layers_link_to_kernels(seeded: Seeded) -> None:
    from db.kernels import profiled_label, profiler_config, store_trace
    from db.models import Run
    from db.session import session_scope

    tr = make_trace("fp32")
    with session_scope(seeded.url) as s:
        r = Run(job_id=seeded.job_id, model_id=seeded.model_id, engine="onnxruntime", precision="fp32", batch_size=1,
                status="succeeded", label=profiled_label("onnxruntime fp32", tr.source_tool),
                config={"profiler": profiler_config(tr, of_run_id=seeded.run_ids["fp32"])})
        s.add(r)
        s.flush()
        rid = r.id
    store_trace(rid, tr, seeded.url)
    at = page("compare").run()
    assert not at.exception, at.exception
    text = _texts(at)
    assert "Kernel profiles" in text and f"Kernels of run {seeded.run_ids['fp32']}" in text
    at = page("layers")
    at.query_params["run"] = str(seeded.run_ids["fp32"])
    at.run()
    assert not at.exception, at.exception
    assert f"Kernels of run {seeded.run_ids['fp32']} (1 profiled run)" in _texts(at)
