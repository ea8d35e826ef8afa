"""trtexec stdout log parser on every log in shared/fixtures/trtexec (values copied from the files)."""

from __future__ import annotations

import pytest

from profiles.errors import ParseError
from profiles.trtexec import TrtVersion, parse_trtexec_log


def _log(shared, rel):
    return parse_trtexec_log((shared / "fixtures/trtexec" / rel).read_text(), rel)


def test_trt8003_fp16_dynamic(shared):
    log = _log(shared, "logs/hackathon_trt8.0.3_fp16_dynamic_verbose.log")
    assert log.version == TrtVersion(8, 0, 3) and log.status == "PASSED"
    assert log.precision == "FP32+FP16"
    assert log.device_name == "NVIDIA GeForce GTX 1070"
    assert log.option("Build Options", "Workspace") == "1024 MiB"
    assert log.build_profile() == {"x": {"min": [1, 1, 28, 28], "opt": [4, 1, 28, 28], "max": [16, 1, 28, 28]}}
    assert log.inference_shapes() == {"x": [4, 1, 28, 28]}
    p = log.performance
    assert p is not None and p.format == "trt8"
    assert p.throughput_qps == 6330.83
    lat = p.metrics["latency"]
    assert (lat.min, lat.max, lat.mean, lat.median) == (0.156006, 0.419556, 0.159522, 0.15918)
    assert lat.percentiles == {99.0: 0.165161}
    e2e = p.metrics["end_to_end_host_latency"]
    assert (e2e.min, e2e.max, e2e.mean, e2e.median, e2e.pct(99)) == (0.163208, 0.55426, 0.283727, 0.289673, 0.298584)
    assert p.metrics["gpu_compute_time"].pct(99) == 0.156677
    assert p.metrics["h2d_latency"].mean == 0.00411691
    assert p.metrics["d2h_latency"].max == 0.0119629
    assert p.metrics["enqueue_time"].median == 0.03302
    assert p.total_host_walltime_s == 3.00039 and p.total_gpu_compute_time_s == 2.90662
    assert "fp16" in log.flags() and log.flags()["workspace"] == "1024"


def test_trt860_loadengine(shared):
    log = _log(shared, "logs/hackathon_trt8.6.0_loadengine_shapes_verbose.log")
    assert log.version == TrtVersion(8, 6, 0) and log.precision == "FP32"
    assert log.device_name == "NVIDIA GeForce RTX 3090"
    assert log.inference_shapes() == {"tensor-0": [4, 1, 28, 28]}
    assert log.option("Build Options", "BuilderOptimizationLevel") == "3"
    p = log.performance
    assert p.throughput_qps == 21009.2
    lat = p.metrics["latency"]
    assert lat.percentiles == {90.0: 0.0532227, 95.0: 0.053772, 99.0: 0.0630798}
    assert (lat.min, lat.max, lat.mean, lat.median) == (0.0490112, 0.617065, 0.0533242, 0.0517578)
    assert p.metrics["gpu_compute_time"].percentiles[95.0] == 0.045105
    assert p.total_gpu_compute_time_s == 2.84346
    assert "end_to_end_host_latency" not in p.metrics


def test_trt1016_cudagraph_no_transfers(shared):
    log = _log(shared, "logs/hackathon_trt10.16_run_shapes_cudagraph_verbose.log")
    assert log.version == TrtVersion(10, 16, 1) and log.device_name == "NVIDIA H100 PCIe"
    assert log.option("Inference Options", "CUDA Graph") == "Enabled"
    assert log.option("Inference Options", "Data transfers") == "Disabled"
    assert log.precision is None  # --loadEngine on TRT 10 prints no Build Options
    p = log.performance
    assert p.throughput_qps == 24896.9
    assert p.metrics["latency"].mean == 0.0387646 and p.metrics["latency"].pct(99) == 0.0390625
    assert p.metrics["h2d_latency"].max == 0.0 and p.metrics["d2h_latency"].mean == 0.0
    assert p.metrics["enqueue_time"].percentiles == {90.0: 0.00219727, 95.0: 0.00219727, 99.0: 0.00244141}
    assert p.total_host_walltime_s == 3.00005


def test_trt1016_build_only(shared):
    log = _log(shared, "logs/hackathon_trt10.16_build_dynamic_fp16_verbose.log")
    assert log.version == TrtVersion(10, 16, 1) and log.status == "PASSED"
    assert log.performance is None
    assert log.precision == "FP32+FP16"
    assert log.option("Build Options", "BuilderOptimizationLevel") == "5"
    assert log.option("Build Options", "Skip inference") == "Enabled"
    assert log.build_profile() == {"x": {"min": [1, 1, 28, 28], "opt": [4, 1, 28, 28], "max": [16, 1, 28, 28]}}


def test_trt1016_dump_profile_table(shared):
    log = _log(shared, "logs/hackathon_trt10.16_dumpProfile.log")
    assert log.performance is None  # no --separateProfileRun: trtexec prints no e2e summary
    assert log.profile_iterations == 18362
    assert len(log.profile) == 15
    first = log.profile[0]
    assert (first.name, first.total_ms, first.avg_ms, first.median_ms, first.percentage) == ("__mye59_0_myl0_0", 31.40, 0.0017, 0.0018, 2.1)
    reformat = log.profile[3]
    assert reformat.name == "Reformatting CopyNode for Input Tensor 0 to {ForeignNode[node_conv2d_1...node_relu_1]}"
    assert log.profile_total.total_ms == 1529.13 and log.profile_total.avg_ms == 0.0833


def test_nsys_wrapped_log(shared):
    log = _log(shared, "logs/hackathon_nsys_profile_trtexec_loadengine.log")
    assert log.status == "PASSED" and log.trace_queries == 26056
    p = log.performance
    assert p.throughput_qps == 8684.66
    assert p.metrics["latency"].max == 1.6731
    assert p.metrics["gpu_compute_time"].percentiles[99.0] == 0.0883789
    assert p.total_gpu_compute_time_s == 1.66639


def test_issue_excerpt_truncated_summary(shared):
    log = _log(shared, "issue_excerpts/TensorRT_3857_trt8.6.3_rtx4090_perf_summary.log")
    p = log.performance
    assert p.throughput_qps == 72.047
    assert p.metrics["latency"].percentiles == {90.0: 14.4785, 95.0: 14.4811, 99.0: 14.4929}
    enq = p.metrics["enqueue_time"]  # the line is cut after "percentile(90%)": keep what is complete
    assert enq.median == 0.0201111 and enq.percentiles == {}


def test_failed_banner_version(shared):
    log = _log(shared, "issue_excerpts/onnx-tensorrt_800_trt8.0.3_unsupported_op_FAILED.log")
    assert log.status == "FAILED" and log.version == TrtVersion(8, 0, 3)
    assert log.flags()["workspace"] == "64" and "buildOnly" in log.flags()


# TensorRT 7.x summary layout, lines as printed in NVIDIA/TensorRT issue #2054 (values from it).
TRT7 = """\
[06/12/2022-22:34:00] [I] Host Latency
[06/12/2022-22:34:00] [I] min: 1.64058 ms (end to end 1.66368 ms)
[06/12/2022-22:34:00] [I] max: 6.2915 ms (end to end 7.65552 ms)
[06/12/2022-22:34:00] [I] mean: 1.66069 ms (end to end 3.00909 ms)
[06/12/2022-22:34:00] [I] median: 1.65601 ms (end to end 3.01636 ms)
[06/12/2022-22:34:00] [I] percentile: 1.67065 ms at 99% (end to end 3.03931 ms at 99%)
[06/12/2022-22:34:00] [I] throughput: 0 qps
[06/12/2022-22:34:00] [I] walltime: 3.00461 s
[06/12/2022-22:34:00] [I] Enqueue Time
[06/12/2022-22:34:00] [I] min: 0.5 ms
[06/12/2022-22:34:00] [I] median: 0.6 ms
[06/12/2022-22:34:00] [I] GPU Compute
[06/12/2022-22:34:00] [I] min: 1.5 ms
[06/12/2022-22:34:00] [I] percentile: 1.6 ms at 99%
[06/12/2022-22:34:00] [I] total compute time: 2.9 s
&&&& PASSED TensorRT.trtexec # ./trtexec --onnx=m.onnx
"""


def test_trt7_summary_format():
    log = parse_trtexec_log(TRT7)
    p = log.performance
    assert p.format == "trt7"
    lat, e2e = p.metrics["latency"], p.metrics["end_to_end_host_latency"]
    assert (lat.min, lat.max, lat.mean, lat.median, lat.pct(99)) == (1.64058, 6.2915, 1.66069, 1.65601, 1.67065)
    assert (e2e.min, e2e.max, e2e.mean, e2e.median, e2e.pct(99)) == (1.66368, 7.65552, 3.00909, 3.01636, 3.03931)
    assert p.metrics["enqueue_time"].median == 0.6
    assert p.metrics["gpu_compute_time"].pct(99) == 1.6
    assert p.throughput_qps == 0 and p.total_host_walltime_s == 3.00461 and p.total_gpu_compute_time_s == 2.9


def test_not_a_log():
    with pytest.raises(ParseError, match="notes.txt"):
        parse_trtexec_log("hello\nworld\n", "notes.txt")


@pytest.mark.parametrize("text,expected", [("v101601", (10, 16, 1)), ("v8003", (8, 0, 3)), ("8600", (8, 6, 0)),
                                           ("v100300", (10, 3, 0)), ("10.16.1", (10, 16, 1)), ("8.6.1.6", (8, 6, 1))])
def test_version_codes(text, expected):
    assert TrtVersion.parse(text) == TrtVersion(*expected)
    assert TrtVersion.parse(str(TrtVersion(*expected).code)) == TrtVersion(*expected)
