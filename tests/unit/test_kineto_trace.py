"""profiles.kineto_trace on the traces recorded on an H200 (tests/data/kernels/README.md): every expected value
is read from the raw JSON of the same file, not typed in."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from profiles.errors import ParseError
from profiles.kernels import categorize, summarize_activities
from profiles.kineto_trace import attribute_ort_nodes, copy_kind, parse_kineto_trace, read_trace_json

DATA = Path(__file__).resolve().parent.parent / "data" / "kernels"
EAGER = DATA / "h200_probe_torch_eager.json.gz"
GRAPH = DATA / "h200_probe_torch_graph.json.gz"
ORT_KINETO = DATA / "h200_probe_ort_kineto.json.gz"
ORT_PROFILE = DATA / "h200_probe_ort_profile.json.gz"
ORT_CLOCK = DATA / "h200_probe_ort_clock.json"


def raw(path: Path) -> dict[str, Any]:
    return json.loads(gzip.decompress(path.read_bytes()))


def raw_events(path: Path, cat: str) -> list[dict[str, Any]]:
    return [e for e in raw(path)["traceEvents"] if e.get("cat") == cat and e.get("ph") == "X"]


def test_eager_trace_counts_versions_devices_and_origin() -> None:
    doc = raw(EAGER)
    t = parse_kineto_trace(EAGER)
    assert t.source_tool == "torch.profiler" and t.schema_version == str(doc["schemaVersion"])
    assert t.meta["cupti_version"] == doc["cupti_version"] and t.meta["cuda_runtime_version"] == doc["cuda_runtime_version"]
    assert t.devices[0]["name"] == doc["deviceProperties"][0]["name"] == "NVIDIA H200"
    c = t.counts()
    assert c["kernels"] == len(raw_events(EAGER, "kernel"))
    assert c["memset"] == len(raw_events(EAGER, "gpu_memset")) and c["memcpy"] == len(raw_events(EAGER, "gpu_memcpy"))
    assert c["cuda_api_calls"] == len(raw_events(EAGER, "cuda_runtime")) + len(raw_events(EAGER, "cuda_driver"))
    assert [r.text for r in t.ranges] == [e["name"] for e in raw_events(EAGER, "user_annotation")]
    earliest = min(e["ts"] for e in doc["traceEvents"] if e.get("ph") == "X")
    assert t.origin_ns == doc["baseTimeNanoseconds"] + round(earliest * 1000)
    assert min(a.start_ns for a in t.activities) >= 0 and min(r.start_ns for r in t.ranges) >= 0
    assert t.notes == []


def test_kernels_per_iteration_are_the_same_in_all_three_iterations() -> None:
    for path in (EAGER, GRAPH, ORT_KINETO):
        t = parse_kineto_trace(path)
        n = len(raw_events(path, "kernel"))
        per = Counter(a.iteration for a in t.kernels())
        assert set(per) == {0, 1, 2}, path.name
        assert per[0] == per[1] == per[2] == n // 3, path.name
        # the same kernel names in the same order in every iteration
        seqs = [[a.name for a in t.kernels() if a.iteration == i] for i in range(3)]
        assert seqs[0] == seqs[1] == seqs[2], path.name


def test_a_kernel_carries_its_duration_grid_resources_and_launch_from_the_file() -> None:
    doc = raw(EAGER)
    first = min(raw_events(EAGER, "kernel"), key=lambda e: e["ts"])
    t = parse_kineto_trace(EAGER)
    k = next(a for a in t.kernels() if a.correlation_id == first["args"]["correlation"])
    assert k.name == first["name"] and "implicit_convolve_sgemm" in k.name
    assert k.duration_ns == round(first["dur"] * 1000)
    assert t.origin_ns + k.start_ns == doc["baseTimeNanoseconds"] + round(first["ts"] * 1000)
    assert k.grid == first["args"]["grid"] and k.block == first["args"]["block"]
    assert k.registers_per_thread == first["args"]["registers per thread"]
    assert k.shared_mem_bytes == first["args"]["shared memory"]
    assert k.stream == first["args"]["stream"] and k.device == first["args"]["device"]
    launch = next(e for e in raw_events(EAGER, "cuda_runtime") + raw_events(EAGER, "cuda_driver")
                  if e["args"].get("correlation") == first["args"]["correlation"])
    assert t.origin_ns + k.launch_ns == doc["baseTimeNanoseconds"] + round(launch["ts"] * 1000)
    assert k.category == "gemm/conv"


def test_kernel_op_is_the_innermost_torch_op_of_its_external_id() -> None:
    ops = {e["args"]["External id"]: e for e in raw_events(EAGER, "cpu_op")}
    t = parse_kineto_trace(EAGER)
    for ev in raw_events(EAGER, "kernel"):
        k = next(a for a in t.kernels() if a.correlation_id == ev["args"]["correlation"])
        assert k.op == ops[ev["args"]["External id"]]["name"]
    # the first convolution kernel's op is cudnn_convolution, the innermost op inside aten::conv2d
    conv = min((a for a in t.kernels() if "convolve" in a.name), key=lambda a: a.start_ns)
    op_ev = next(e for e in ops.values() if e["name"] == conv.op)
    outer = [e["name"] for e in ops.values() if e["ts"] <= op_ev["ts"] and e["ts"] + e["dur"] >= op_ev["ts"] + op_ev["dur"]]
    assert conv.op == "aten::cudnn_convolution" and "aten::conv2d" in outer
    assert {"aten::addmm", "aten::native_layer_norm"} <= {a.op for a in t.kernels()}


def test_cuda_graph_replay_kernels_belong_to_their_graph_launch_and_iteration() -> None:
    t = parse_kineto_trace(GRAPH)
    launches = [e for e in raw_events(GRAPH, "cuda_runtime") if e["name"] == "cudaGraphLaunch"]
    assert len(launches) == 3
    assert all(a.op == "cudaGraphLaunch" and a.iteration is not None for a in t.activities)
    by_corr = Counter(a.correlation_id for a in t.kernels())
    assert sorted(by_corr) == sorted(e["args"]["correlation"] for e in launches)
    for i, launch in enumerate(sorted(launches, key=lambda e: e["ts"])):
        ks = [a for a in t.kernels() if a.correlation_id == launch["args"]["correlation"]]
        assert {a.iteration for a in ks} == {i}
        assert {a.launch_ns for a in ks} == {round(launch["ts"] * 1000) - (t.origin_ns - raw(GRAPH)["baseTimeNanoseconds"])}
    # the graph replays the eager network's kernels
    eager = parse_kineto_trace(EAGER)
    assert sorted(a.name for a in t.kernels()) == sorted(a.name for a in eager.kernels())


def test_memcpy_direction_and_bytes() -> None:
    t = parse_kineto_trace(ORT_KINETO)
    copies = raw_events(ORT_KINETO, "gpu_memcpy")
    mine = [a for a in t.activities if a.kind == "memcpy"]
    assert len(mine) == len(copies) > 0
    for ev in copies:
        a = next(m for m in mine if m.correlation_id == ev["args"]["correlation"])
        assert a.bytes == ev["args"]["bytes"] and a.copy_kind == ev["name"].split()[1]
        assert a.category == "memcpy" and a.copy_kind in ("HtoD", "DtoH")
    assert copy_kind("Memcpy DtoD (Device -> Device)") == "DtoD" and copy_kind("memcpy?") == "unknown"


def test_ort_kineto_kernels_are_attributed_to_onnx_runtime_nodes() -> None:
    clock = json.loads(ORT_CLOCK.read_text())
    profile = read_trace_json(ORT_PROFILE, "ONNX Runtime profile")
    t = parse_kineto_trace(ORT_KINETO)
    assert all(a.op is None for a in t.kernels())  # ORT kernels carry no torch External id
    counts = attribute_ort_nodes(t, profile, clock["ort_profiling_start_ns"])
    assert t.source_tool == "onnxruntime+kineto"
    assert counts["kernels"] == len(t.kernels()) and counts["kernels_attributed"] >= 0.9 * counts["kernels"]
    assert t.meta["ort_attribution"]["kernels_attributed"] == counts["kernels_attributed"]
    assert any("kernels launched inside a node's host span" in n for n in t.notes)
    node_names = {e["name"][: -len("_kernel_time")] for e in profile if e.get("cat") == "Node"}
    assert {a.op.rsplit(" (", 1)[0] for a in t.kernels() if a.op} <= node_names
    # the first kernel of each run is the first convolution's, named as ONNX Runtime names the node
    for i in range(3):
        first = min((a for a in t.kernels() if a.iteration == i), key=lambda a: a.start_ns)
        assert first.op == "/conv/conv.0/Conv (Conv)" and "convolve" in first.name
    # every iteration maps the same kernels to the same nodes (the clocks line up run after run)
    seqs = [[(a.name, a.op) for a in t.kernels() if a.iteration == i] for i in range(3)]
    assert seqs[0] == seqs[1] == seqs[2]
    # the clock readings of the capture: each ORT model_run starts inside its iteration range
    runs = sorted(e["ts"] for e in profile if e.get("name") == "model_run")[-3:]
    for r, ts_us in zip(t.ranges, runs):
        absolute = clock["ort_profiling_start_ns"] + ts_us * 1000
        assert t.origin_ns + r.start_ns <= absolute <= t.origin_ns + r.end_ns


def test_summaries_put_convolutions_in_gemm_conv_and_flash_kernels_in_attention() -> None:
    t = parse_kineto_trace(EAGER)
    s = summarize_activities(t.activities)
    assert s.iterations == 3 and len(s.per_iteration_busy_ns) == 3
    assert sum(s.by_category_ns.values()) == sum(a.duration_ns for a in t.activities)
    for k in s.top:
        if "conv" in k.name.lower() and "sdpa" not in k.name:
            assert k.category == "gemm/conv", k.name
        if "flash" in k.name or "sdpa" in k.name:
            assert k.category == "attention", k.name
    flash = [a for a in t.kernels() if "flash" in a.name]
    assert flash and s.by_category_ns["attention"] >= sum(a.duration_ns for a in flash)
    assert categorize(flash[0].name) == "attention"


def test_plain_json_and_decoded_dict_parse_the_same(tmp_path: Path) -> None:
    plain = tmp_path / "trace.json"
    plain.write_text(json.dumps(raw(EAGER)))
    a, b, c = parse_kineto_trace(EAGER), parse_kineto_trace(plain), parse_kineto_trace(raw(EAGER))
    assert a.activities == b.activities == c.activities and a.ranges == c.ranges and a.origin_ns == c.origin_ns


def test_bad_inputs_raise_parse_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="nope.json: Kineto trace not found"):
        parse_kineto_trace(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ParseError, match="bad.json: not a JSON Kineto trace"):
        parse_kineto_trace(bad)
    arr = tmp_path / "list.json"
    arr.write_text("[]")
    with pytest.raises(ParseError, match="list.json: not a Kineto trace"):
        parse_kineto_trace(arr)
    no_ts = tmp_path / "no_ts.json"
    no_ts.write_text(json.dumps({"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "dur": 1.0}]}))
    with pytest.raises(ParseError, match="no_ts.json: event 0 .*lacks a numeric ts"):
        parse_kineto_trace(no_ts)
    t = parse_kineto_trace({"traceEvents": []})
    assert t.origin_ns is None and t.notes and "no GPU kernel events" in t.notes[0]
    with pytest.raises(ParseError, match="no clock"):
        attribute_ort_nodes(t, [], 0)
    with pytest.raises(ParseError, match="ONNX Runtime profile is a JSON list"):
        attribute_ort_nodes(parse_kineto_trace(EAGER), "x", 0)  # type: ignore[arg-type]
