"""Console sessions: an API key exchanged for a random session token kept in an HTTP-only cookie.

Only the token's sha256 is stored (a stolen database copy opens no session). The CSRF token of a session is
derived from its token, so it needs no storage and changes with every sign-in. A session ends at its expiry,
at sign-out, or as soon as its API key is revoked or expires (checked on every request)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from api.keys import Principal, Role
from api.tables import api_keys
from features.store.tables import metadata

ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("api_key_id", sa.Integer, sa.ForeignKey("api_keys.id"), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    expires_at: dt.datetime


class SessionEnded(LookupError):
    """A session cookie that no longer opens a session (expired, signed out, key revoked or expired)."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def csrf_for(token: str) -> str:
    # Bound to the session token: a page of one session cannot be used to post into another.
    return hmac.new(token.encode("utf-8"), b"indexloan-ui-csrf", hashlib.sha256).hexdigest()


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode("ascii"), (given or "").encode("ascii", "replace"))


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)  # SQLite gives naive UTC


def open_session(engine: sa.Engine, principal: Principal, minutes: float) -> tuple[str, dt.datetime]:
    """A new session for the key's principal: (token for the cookie, expiry). Never outlives the key."""
    token = secrets.token_urlsafe(32)
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(minutes=minutes)
    if principal.expires_at is not None:
        expires = min(expires, principal.expires_at)
    with engine.begin() as conn:
        conn.execute(ui_sessions.insert().values(token_hash=_digest(token), api_key_id=principal.key_id,
                                                 created_at=now, expires_at=expires))
        # expired sessions are swept at each sign-in: the table stays as small as the live sessions
        conn.execute(ui_sessions.delete().where(ui_sessions.c.expires_at <= now))
    return token, expires


def find_session(engine: sa.Engine, token: str) -> Session:
    """The live session of a cookie's token; SessionEnded (and the row removed) when it has ended."""
    if not token or len(token) > 128:
        raise SessionEnded("no session")
    digest = _digest(token)
    now = dt.datetime.now(dt.UTC)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(ui_sessions.c.expires_at, api_keys.c.id, api_keys.c.name, api_keys.c.role,
                      api_keys.c.key_hash, api_keys.c.expires_at.label("key_expires_at"), api_keys.c.revoked_at)
            .join(api_keys, api_keys.c.id == ui_sessions.c.api_key_id)
            .where(ui_sessions.c.token_hash == digest)
        ).first()
    if row is None:
        raise SessionEnded("no session")
    key_expires = _aware(row.key_expires_at)
    if _aware(row.expires_at) <= now or row.revoked_at is not None or (key_expires is not None and key_expires <= now):
        close_session(engine, token)
        raise SessionEnded("the session has ended")
    principal = Principal(row.id, row.name, Role(row.role), key_expires)
    return Session(principal, csrf_for(token), _aware(row.expires_at))


def close_session(engine: sa.Engine, token: str) -> None:
    with engine.begin() as conn:
        conn.execute(ui_sessions.delete().where(ui_sessions.c.token_hash == _digest(token)))


__all__ = ["Session", "SessionEnded", "close_session", "csrf_for", "csrf_matches", "find_session", "open_session",
           "ui_sessions"]
