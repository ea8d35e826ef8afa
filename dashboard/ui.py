"""Shared Streamlit widgets and helpers of the dashboard pages.

- :func:`db_url`: the database URL, with the engine cached (``st.cache_resource``) and the schema
  migrated once per process, so the app works on a fresh ``ENGINESCOPE_HOME``.
- :func:`render_environment`: sidebar panel saying which engines/GPU this machine has and how to get
  the missing ones (the app must explain itself on a machine without GPU, TensorRT or vLLM).
- :func:`model_selectbox`, :func:`link_to_page`, :func:`fmt_shape`, :func:`fmt_bytes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st
from sqlalchemy import Engine

from dashboard import data
from db.config import db_url as _configured_db_url

_PAGES_STATE_KEY = "_enginescope_pages"


@st.cache_resource(show_spinner=False)
def _engine_for(url: str) -> Engine:
    """The cached SQLAlchemy engine of ``url``, after applying migrations (idempotent)."""
    from db.session import get_engine, migrate

    migrate(url)
    return get_engine(url)


def db_url() -> str:
    """The database URL of this process (``ENGINESCOPE_DB_URL`` or SQLite in ``ENGINESCOPE_HOME``);
    its engine is created and migrated once (cached)."""
    url = _configured_db_url()
    _engine_for(url)
    return url


def register_pages(pages: Mapping[str, Any]) -> None:
    """Remember the ``st.Page`` objects of this session (called by ``dashboard/app.py``) for links."""
    st.session_state[_PAGES_STATE_KEY] = dict(pages)


def link_to_page(name: str, label: str, query_params: Mapping[str, Any] | None = None) -> None:
    """``st.page_link`` to the page registered as ``name`` (e.g. ``"jobs"``); a plain hint when the page
    runs on its own (tests, ``streamlit run`` of one page)."""
    page = st.session_state.get(_PAGES_STATE_KEY, {}).get(name)
    if page is not None:
        st.page_link(page, label=label, icon=":material/arrow_forward:", query_params=dict(query_params or {}))
    else:
        st.caption(f"{label}: open the **{name.replace('_', ' ').title()}** page in the sidebar.")


def render_environment(expanded: bool = False) -> None:
    """Sidebar panel: engines and GPU available on this machine, with install hints for missing ones."""
    rows = data.environment_status()
    missing = [r for r in rows if r["status"] != "available"]
    with st.sidebar.expander(f"This machine ({len(rows) - len(missing)}/{len(rows)} available)", expanded=expanded):
        for r in rows:
            mark = ":green[available]" if r["status"] == "available" else ":orange[missing]"
            st.markdown(f"**{r['component']}**: {mark}")
            if r["detail"]:
                st.caption(r["detail"])


def model_label(m: Mapping[str, Any]) -> str:
    """``"#id name (size)"`` for a model dict."""
    return f"#{m['id']} {m['original_name']} ({fmt_bytes(m.get('size_bytes'))})"


def model_selectbox(key: str, models: Sequence[Mapping[str, Any]], label: str = "Model",
                    default_id: int | None = None) -> int | None:
    """Selectbox over ``models`` (dicts from :func:`dashboard.data.list_models`); returns the chosen id.

    ``default_id`` (e.g. from the ``model`` query parameter) preselects a model when present.
    """
    if not models:
        return None
    ids = [int(m["id"]) for m in models]
    labels = {int(m["id"]): model_label(m) for m in models}
    index = ids.index(default_id) if default_id in ids else 0
    return st.selectbox(label, ids, index=index, format_func=lambda i: labels[i], key=key)


def query_int(name: str) -> int | None:
    """An integer query parameter (``?job=3``), or None when absent or not an integer."""
    raw = st.query_params.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def fmt_shape(shape: Sequence[Any] | None) -> str:
    """``[1, "batch", None]`` -> ``"1 x batch x ?"`` (symbolic dims by name, unknown as ``?``)."""
    if shape is None:
        return "(unknown rank)"
    if len(shape) == 0:
        return "scalar"
    return " x ".join("?" if d is None else str(d) for d in shape)


def fmt_bytes(n: int | float | None) -> str:
    """Human-readable size (binary units)."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def batch_suffix(batch: int | None) -> str:
    """``" b8"`` for batch 8; ``""`` when the batch size is unknown (e.g. some imported runs)."""
    return f" b{batch}" if batch else ""


def fmt_ms(v: float | None) -> str:
    """Milliseconds with 4 significant digits, ``"-"`` for None."""
    return "-" if v is None else f"{v:.4g} ms"


@st.cache_data(show_spinner=False, max_entries=256, ttl=3600)
def _verdicts_cached(url: str, run_ids: tuple[int, ...], baseline_id: int, metric: str | None, allow_different: bool,
                     stamp: tuple[tuple[int, str, str], ...]) -> list[Any]:
    from db.verdicts import verdict_table

    return verdict_table(list(run_ids), baseline_id, metric, url=url, allow_different=allow_different)


def verdicts(url: str, run_ids: Sequence[int], baseline_id: int, metric: str | None = None, *,
             allow_different: bool = False) -> list[Any]:
    """:func:`db.verdicts.verdict_table`, cached per process while the runs are unchanged
    (:func:`dashboard.data.runs_stamp`: every run ended; status and end time in the key): the bootstrap is the
    costliest part of the Compare and Reports pages, and every viewer of the same runs gets the same
    deterministic verdicts. Runs still measuring are computed afresh on every call.

    Raises:
        InputError: as :func:`db.verdicts.compare_runs`.
    """
    from db.verdicts import verdict_table

    stamp = data.runs_stamp(url, run_ids)
    if stamp is None:
        return verdict_table(list(run_ids), baseline_id, metric, url=url, allow_different=allow_different)
    return _verdicts_cached(url, tuple(int(i) for i in run_ids), int(baseline_id), metric, bool(allow_different), stamp)


def report_link(report_id: int) -> str:
    """The stable link of a saved report as this browser reached the dashboard (``st.context.url``'s scheme
    and host, so a ``--port`` or a proxy's name is right), else ``db.reports.report_url``'s configured base."""
    from urllib.parse import urlsplit

    from db.reports import report_url

    base = None
    try:
        u = urlsplit(st.context.url or "")
        if u.scheme in ("http", "https") and u.netloc:
            base = f"{u.scheme}://{u.netloc}"
    except (AttributeError, RuntimeError, ValueError):  # no browser session (AppTest, bare mode)
        base = None
    return report_url(report_id, base)
