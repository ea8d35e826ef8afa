"""Access control: who may do what. The one place a role is checked.

Roles (:data:`ROLES`): ``viewer`` reads models, runs and reports; ``editor`` may also perform every action
of :data:`ACTIONS` (upload, start, cancel, import, delete, save reports). Every dashboard page asks
:func:`allowed` before offering an action and calls :func:`check` before performing it
(``dashboard/auth.py`` supplies the identity), so hiding a button is never the only defence.

Identities come from the authentication in front of the dashboard (``dashboard/auth.py``): the OIDC login's
e-mail or a trusted reverse proxy's ``X-Forwarded-User``. With authentication off (the default, on localhost)
everyone is the editor ``local`` and the dashboard says so in a banner.

Roles are rows of ``users``. The first user to sign in when the table is empty becomes an editor
(``granted_by = "first user"``); later unknown users are viewers until an editor or
``enginescope users grant NAME --role editor`` says otherwise.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from sqlalchemy import func, select

from db.models import User, utcnow
from db.session import session_scope
from profiles.errors import EngineScopeError, InputError

#: The roles, least to most privileged.
ROLES: tuple[str, ...] = ("viewer", "editor")

#: Every action a page can perform, with the role it needs; reading needs ``viewer``.
ACTIONS: dict[str, str] = {
    "read": "viewer",
    "upload": "editor",        # add a model (upload, server path), upload inputs / calibration files
    "start": "editor",         # queue or start a benchmark, an export, an LLM sweep
    "cancel": "editor",        # cancel a job
    "import": "editor",        # import tool outputs (trtexec, nsys, LLM benchmark results)
    "delete": "editor",        # delete a model or a report
    "save_report": "editor",   # save or edit a report
    "manage_users": "editor",  # grant or revoke roles
}

#: Longest identity name stored (``users.name``).
NAME_MAX = 256


class AccessDenied(EngineScopeError):
    """An identity tried an action its role does not allow. ``action`` and ``identity`` say which."""

    def __init__(self, message: str, *, action: str, identity: Identity) -> None:
        super().__init__(message)
        self.action = action
        self.identity = identity


@dataclass(frozen=True)
class Identity:
    """Who is acting: ``name`` (as authenticated), ``role`` (:data:`ROLES`), ``source`` (``"off"`` when
    authentication is off, ``"oidc"``, ``"proxy"``, ``"cli"``)."""

    name: str
    role: str
    source: str


#: The identity of everyone when authentication is off.
LOCAL = Identity("local", "editor", "off")


def normalize_name(name: str | None, field: str = "user") -> str:
    """An identity name as stored: NFC-normalised, surrounding spaces removed.

    Raises:
        InputError: empty, longer than :data:`NAME_MAX`, or containing control characters (named as ``field``).
    """
    n = unicodedata.normalize("NFC", (name or "").strip())
    if not n:
        raise InputError(f"{field}: an empty user name")
    if len(n) > NAME_MAX:
        raise InputError(f"{field}: a user name of at most {NAME_MAX} characters (got {len(n)})")
    if any(unicodedata.category(ch) == "Cc" for ch in n):
        raise InputError(f"{field}: control characters (newline, NUL ...) in user name {n!r}")
    return n


def _role(role: str, field: str = "--role") -> str:
    if role not in ROLES:
        raise InputError(f"{field} {role!r} is not one of {', '.join(ROLES)}")
    return role


def grant(name: str, role: str, *, by: str | None = None, url: str | None = None) -> None:
    """Give ``name`` the role ``role`` (creating the user).

    Raises:
        InputError: a bad name (``NAME``) or an unknown role (``--role``).
    """
    n = normalize_name(name, "NAME")
    r = _role(role)
    with session_scope(url) as s:
        u = s.execute(select(User).where(User.name == n)).scalar_one_or_none()
        if u is None:
            s.add(User(name=n, role=r, granted_by=by, created_at=utcnow()))
        else:
            u.role, u.granted_by, u.updated_at = r, by, utcnow()


def revoke(name: str, *, url: str | None = None) -> bool:
    """Remove ``name``'s row (it becomes an unknown user: a viewer); False when there was none."""
    n = normalize_name(name, "NAME")
    with session_scope(url) as s:
        u = s.execute(select(User).where(User.name == n)).scalar_one_or_none()
        if u is None:
            return False
        s.delete(u)
        return True


def list_users(url: str | None = None) -> list[dict[str, object]]:
    """Every user row as ``{"name", "role", "granted_by", "created_at", "updated_at"}``, by name."""
    with session_scope(url) as s:
        return [{"name": u.name, "role": u.role, "granted_by": u.granted_by, "created_at": u.created_at,
                 "updated_at": u.updated_at} for u in s.execute(select(User).order_by(User.name)).scalars()]


def resolve(name: str, source: str, *, url: str | None = None) -> Identity:
    """The :class:`Identity` of an authenticated ``name``: its stored role; when ``users`` is empty the first
    user becomes an editor (stored); otherwise an unknown user is a viewer (not stored).

    Raises:
        InputError: a bad name (the header or claim it came from is named by the caller's ``source``).
    """
    n = normalize_name(name, f"user name from {source}")
    with session_scope(url) as s:
        u = s.execute(select(User).where(User.name == n)).scalar_one_or_none()
        if u is not None:
            return Identity(n, u.role, source)
        if s.execute(select(func.count()).select_from(User)).scalar_one() == 0:
            s.add(User(name=n, role="editor", granted_by="first user", created_at=utcnow()))
            return Identity(n, "editor", source)
    return Identity(n, "viewer", source)


def allowed(identity: Identity, action: str) -> bool:
    """Whether ``identity`` may perform ``action`` (:data:`ACTIONS`).

    Raises:
        KeyError: an action not in :data:`ACTIONS` (a programming error, not user input).
    """
    need = ACTIONS[action]
    return ROLES.index(identity.role) >= ROLES.index(need) if identity.role in ROLES else False


def check(identity: Identity, action: str) -> Identity:
    """Return ``identity`` when it may perform ``action``.

    Raises:
        AccessDenied: it may not (the message names the user, the role and the action).
    """
    if not allowed(identity, action):
        raise AccessDenied(f"{identity.name} is a {identity.role}: '{action}' needs the {ACTIONS[action]} role "
                           "(an editor grants it on the Jobs page's Users panel or with "
                           "`enginescope users grant NAME --role editor`)", action=action, identity=identity)
    return identity
