"""Authentication in front of the dashboard, and the role gate every page goes through.

``ENGINESCOPE_AUTH`` picks the mode:

- ``off`` (default): no login. Everyone is the editor ``local``; a sidebar banner says so. Meant for a
  dashboard on localhost (``run_dashboard.sh`` binds 127.0.0.1 unless told otherwise).
- ``oidc``: Streamlit's OpenID Connect login (``st.login`` / ``st.user``, configured in
  ``.streamlit/secrets.toml`` under ``[auth]``: ``redirect_uri``, ``cookie_secret``, ``client_id``,
  ``client_secret``, ``server_metadata_url``). The identity is the ID token's ``email`` (else ``sub``).
- ``proxy``: a trusted reverse proxy authenticates and sends the user in ``X-Forwarded-User`` (or
  ``ENGINESCOPE_PROXY_HEADER``). Enabled explicitly, with the proxy's addresses in
  ``ENGINESCOPE_TRUSTED_PROXY`` (comma-separated; ``localhost`` for a proxy on this host, whose
  connections Streamlit reports without an address). A request from any other address, or without the
  header, is refused: the header is only as trustworthy as the connection it came on.

Roles and the actions they allow are :mod:`db.access` (the one place a role is checked). Pages call
:func:`can` before offering an action and :func:`require` right before performing it; :func:`require` stops
the script with an error for an identity that may not, so a forged widget event or a page that forgot to
hide a button still cannot act.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import streamlit as st

from db.access import LOCAL, AccessDenied, Identity, allowed, check, resolve
from profiles.errors import InputError

MODES: tuple[str, ...] = ("off", "oidc", "proxy")
_STATE_KEY = "_enginescope_identity"


def mode() -> str:
    """The configured mode (``ENGINESCOPE_AUTH``, default ``off``).

    Raises:
        InputError: an unknown value (named as ``ENGINESCOPE_AUTH``), or ``proxy`` without
            ``ENGINESCOPE_TRUSTED_PROXY``.
    """
    m = (os.environ.get("ENGINESCOPE_AUTH") or "off").strip().lower()
    if m not in MODES:
        raise InputError(f"ENGINESCOPE_AUTH={m!r} is not one of {', '.join(MODES)}")
    if m == "proxy" and not trusted_proxies():
        raise InputError("ENGINESCOPE_AUTH=proxy needs ENGINESCOPE_TRUSTED_PROXY (the proxy's address(es), "
                         "comma-separated; 'localhost' for a proxy on this host)")
    return m


def trusted_proxies() -> set[str]:
    """Addresses of ``ENGINESCOPE_TRUSTED_PROXY`` (``localhost`` also matches a connection without address)."""
    return {a.strip() for a in (os.environ.get("ENGINESCOPE_TRUSTED_PROXY") or "").split(",") if a.strip()}


def proxy_identity(peer: str | None, headers: Mapping[str, str], url: str | None = None) -> Identity | str:
    """The identity a trusted proxy asserts, or why there is none (a sentence).

    Args:
        peer: the connection's address (``st.context.ip_address``; None for localhost).
        headers: the request headers (``st.context.headers``; case-insensitive there).
    """
    header = os.environ.get("ENGINESCOPE_PROXY_HEADER") or "X-Forwarded-User"
    trusted = trusted_proxies()
    local = peer is None or peer in ("127.0.0.1", "::1")
    if not (peer in trusted or (local and trusted & {"localhost", "127.0.0.1", "::1"})):
        return f"this connection ({peer or 'localhost'}) does not come from the trusted proxy ({', '.join(sorted(trusted))})"
    name = headers.get(header)
    if not name:
        return f"the trusted proxy sent no {header} header"
    return resolve(name, f"the {header} header", url=url)


def _oidc_identity(url: str | None) -> Identity | None:
    if not st.user.is_logged_in:
        return None
    name = st.user.get("email") or st.user.get("sub")
    return resolve(str(name), "the OIDC login", url=url)


def authenticate(url: str | None) -> Identity:
    """This session's identity for this script run (called once per run by ``dashboard/app.py``, and by
    :func:`current` when a page runs on its own). Shows the login button (``oidc``) or the refusal
    (``proxy``) and stops the script when there is no identity; shows the banner when authentication is off.
    """
    m = mode()
    if m == "off":
        ident = LOCAL
    elif m == "oidc":
        got = _oidc_identity(url)
        if got is None:
            st.title("EngineScope")
            st.info("Sign in to open the dashboard.")
            st.button("Log in", on_click=st.login, key="auth_login")
            st.stop()
        ident = got
    else:
        res = proxy_identity(st.context.ip_address, st.context.headers, url)
        if isinstance(res, str):
            st.error(f"Not authenticated: {res}.")
            st.stop()
        ident = res  # type: ignore[assignment]
    st.session_state[_STATE_KEY] = ident
    return ident


def render_banner(ident: Identity) -> None:
    """Sidebar line: who is signed in with which role, or that authentication is off."""
    if ident.source == "off":
        st.sidebar.warning("Authentication is off: everyone who can reach this dashboard is an editor (fine on "
                           "localhost; set ENGINESCOPE_AUTH=oidc or proxy for a shared server).", icon=":material/lock_open:")
        return
    st.sidebar.caption(f"Signed in as **{ident.name}** ({ident.role}).")
    if ident.source == "oidc":
        st.sidebar.button("Log out", on_click=st.logout, key="auth_logout")


def current(url: str | None = None) -> Identity:
    """The identity of this session (as :func:`authenticate` set it this run; authenticated now otherwise)."""
    ident = st.session_state.get(_STATE_KEY)
    if isinstance(ident, Identity):
        return ident
    return authenticate(url)


def can(action: str, url: str | None = None) -> bool:
    """Whether this session may perform ``action`` (:data:`db.access.ACTIONS`): pages offer it only then."""
    return allowed(current(url), action)


def require(action: str, url: str | None = None) -> Identity:
    """This session's identity when it may perform ``action``; otherwise an error on the page and the script
    stops (nothing is performed). Call it right before the action."""
    try:
        return check(current(url), action)
    except AccessDenied as exc:
        st.error(f"Refused: {exc}")
        st.stop()
        raise  # st.stop raises; this line is for type checkers


def viewer_note(what: str) -> None:
    """Where an action would be: a one-line note that the viewer role cannot ``what``."""
    ident = current()
    st.caption(f"{ident.name} is a {ident.role}: viewers cannot {what}.")
