"""EngineScope dashboard entry point: ``streamlit run dashboard/app.py``.

Pages live in ``dashboard/app_pages/``; widget keys are prefixed per page (``models_``, ``newbench_``...).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the repository root.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

PAGES_DIR = Path(__file__).parent / "app_pages"

st.set_page_config(page_title="EngineScope", layout="wide")

nav = st.navigation(
    {
        "Models": [
            st.Page(PAGES_DIR / "models.py", title="Models", icon=":material/deployed_code:", default=True),
            st.Page(PAGES_DIR / "new_benchmark.py", title="New benchmark", icon=":material/play_arrow:"),
            st.Page(PAGES_DIR / "jobs.py", title="Jobs", icon=":material/list:"),
            st.Page(PAGES_DIR / "compare.py", title="Compare", icon=":material/bar_chart:"),
            st.Page(PAGES_DIR / "layers.py", title="Layers", icon=":material/layers:"),
            st.Page(PAGES_DIR / "tensorrt_import.py", title="Import trtexec", icon=":material/upload:"),
        ],
        "LLM serving": [
            st.Page(PAGES_DIR / "llm.py", title="LLM serving", icon=":material/chat:"),
        ],
        "Help": [
            st.Page(PAGES_DIR / "metrics_help.py", title="Metric definitions", icon=":material/help:"),
        ],
    }
)
nav.run()
