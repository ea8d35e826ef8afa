"""trtexec output parsers: stdout log (:mod:`.log`), JSON exports (:mod:`.exports`), failure
diagnosis (:mod:`.diagnose`) and TensorRT version numbers (:mod:`.version`). Pure functions."""

from profiles.trtexec.diagnose import Collapsed, Diagnosis, diagnose
from profiles.trtexec.exports import (
    LayerInfo,
    LayerInfoExport,
    MergedLayer,
    ProfileExport,
    TensorInfo,
    TimesExport,
    dtype_of_format,
    fusion_note,
    merge_layers,
    parse_layer_info,
    parse_profile,
    parse_times,
)
from profiles.trtexec.log import MetricStats, PerformanceSummary, ProfileRow, TrtexecLog, parse_trtexec_log
from profiles.trtexec.version import TrtVersion

__all__ = [
    "Collapsed", "Diagnosis", "diagnose", "LayerInfo", "LayerInfoExport", "MergedLayer", "ProfileExport",
    "TensorInfo", "TimesExport", "dtype_of_format", "fusion_note", "merge_layers", "parse_layer_info",
    "parse_profile", "parse_times", "MetricStats", "PerformanceSummary", "ProfileRow", "TrtexecLog",
    "parse_trtexec_log", "TrtVersion",
]
