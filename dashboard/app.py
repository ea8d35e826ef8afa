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

from dashboard import auth, ui  # noqa: E402
from profiles.errors import InputError  # noqa: E402

_PAGES = {
    "models": st.Page(PAGES_DIR / "models.py", title="Models", icon=":material/deployed_code:", default=True),
    "new_benchmark": st.Page(PAGES_DIR / "new_benchmark.py", title="New benchmark", icon=":material/play_arrow:"),
    "jobs": st.Page(PAGES_DIR / "jobs.py", title="Jobs", icon=":material/list:"),
    "compare": st.Page(PAGES_DIR / "compare.py", title="Compare", icon=":material/bar_chart:"),
    "reports": st.Page(PAGES_DIR / "reports.py", title="Reports", icon=":material/summarize:", url_path="reports"),
    "layers": st.Page(PAGES_DIR / "layers.py", title="Layers", icon=":material/layers:"),
    "kernels": st.Page(PAGES_DIR / "kernels.py", title="Kernels", icon=":material/memory:"),
}
ui.register_pages(_PAGES)
try:
    auth.render_banner(auth.authenticate(ui.db_url()))  # once per run: every page then reads the identity
except InputError as exc:  # a misconfigured ENGINESCOPE_AUTH / proxy, or a bad user name from the login
    st.error(f"Authentication is misconfigured: {exc}")
    st.stop()
ui.render_environment()

nav = st.navigation(
    {
        "Models": [
            _PAGES["models"],
            _PAGES["new_benchmark"],
            _PAGES["jobs"],
            _PAGES["compare"],
            _PAGES["reports"],
            _PAGES["layers"],
            _PAGES["kernels"],
            st.Page(PAGES_DIR / "tensorrt_import.py", title="Import results", icon=":material/upload:"),
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
