"""Metric definitions page: renders ``docs/metrics.md`` (the one written definition of every metric)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"

st.title("Metric definitions")
if METRICS_DOC.is_file():
    st.markdown(METRICS_DOC.read_text(encoding="utf-8"))
    st.caption(f"Source: `{METRICS_DOC.relative_to(METRICS_DOC.parents[1])}`")
else:
    st.error(f"docs/metrics.md is missing at {METRICS_DOC}; this installation has no metric documentation.")
