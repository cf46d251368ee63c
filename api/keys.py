"""API keys: random bearer tokens stored only as sha256 hashes, each with one role."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa

from api.tables import api_keys
from features.store import audit

KEY_PREFIX = "ilk_"


class Role(StrEnum):
    loan_officer = "loan_officer"
    platform = "platform"
    risk_analyst = "risk_analyst"
    risk_approver = "risk_approver"
    admin = "admin"


@dataclass(frozen=True)
class Principal:
    key_id: int
    name: str
    role: Role
    expires_at: dt.datetime | None = None  # None: never

    def expired(self, now: dt.datetime | None = None) -> bool:
        return self.expires_at is not None and (now or dt.datetime.now(dt.UTC)) >= self.expires_at


class KeyOperationError(ValueError):
    """A key operation that cannot be done (unknown key, already revoked); the message says which."""


MAX_KEY_NAME = 128


def hash_key(key: str) -> str:
    # Keys are 256-bit random tokens, so a plain sha256 is enough (no password stretching needed).
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)  # SQLite returns naive UTC


def create_key(engine: sa.Engine, role: Role, name: str, created_by: str = "cli",
               expires_at: dt.datetime | None = None) -> str:
    """Create a key and return it; only its hash is stored, so this is the one time it is seen."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        key_id = conn.execute(
            api_keys.insert().values(
                name=name, role=role.value, key_hash=hash_key(key), key_prefix=key[:10], created_by=created_by,
                created_at=dt.datetime.now(dt.UTC), expires_at=expires_at,
            )
        ).inserted_primary_key[0]
        audit.append(conn, created_by, "key.create", f"key:{key_id}",
                     {"name": name, "role": role.value,
                      "expires_at": expires_at.isoformat() if expires_at is not None else None})
    return key


def lookup(conn: sa.Connection, key: str) -> Principal | None:
    """The key's principal, or None when unknown, revoked or expired."""
    digest = hash_key(key)
    row = conn.execute(
        sa.select(api_keys.c.id, api_keys.c.name, api_keys.c.role, api_keys.c.key_hash, api_keys.c.expires_at).where(
            api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None)
        )
    ).first()
    # The index finds the row; the digest is compared again in constant time (no timing signal either way).
    if row is None or not hmac.compare_digest(row.key_hash.encode("ascii"), digest.encode("ascii")):
        return None
    principal = Principal(row.id, row.name, Role(row.role), _aware(row.expires_at))
    return None if principal.expired() else principal


def list_keys(conn: sa.Connection) -> list[dict]:
    rows = conn.execute(sa.select(api_keys.c.id, api_keys.c.name, api_keys.c.role, api_keys.c.key_prefix,
                                  api_keys.c.created_at, api_keys.c.expires_at, api_keys.c.revoked_at)
                        .order_by(api_keys.c.id)).all()
    return [{"id": r.id, "name": r.name, "role": r.role, "prefix": r.key_prefix,
             "created_at": _aware(r.created_at).isoformat(),
             "expires_at": _aware(r.expires_at).isoformat() if r.expires_at else None,
             "revoked_at": _aware(r.revoked_at).isoformat() if r.revoked_at else None} for r in rows]


def revoke_key(engine: sa.Engine, key_id: int, revoked_by: str, reason: str) -> dict:
    """Revoke a key (audited). Callers then bump the key epoch (api.http.limits) so that every worker drops
    its cached keys at once. KeyOperationError when the key is unknown or already revoked."""
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        row = conn.execute(sa.select(api_keys.c.id, api_keys.c.name, api_keys.c.role, api_keys.c.revoked_at)
                           .where(api_keys.c.id == key_id)).first()
        if row is None:
            raise KeyOperationError(f"no API key has id {key_id}")
        if row.revoked_at is not None:
            revoked = _aware(row.revoked_at).isoformat()
            raise KeyOperationError(f"API key {key_id} ({row.name}) was already revoked at {revoked}")
        conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(revoked_at=now))
        audit.append(conn, revoked_by, "key.revoke", f"key:{key_id}",
                     {"name": row.name, "role": row.role, "reason": reason})
    return {"id": key_id, "name": row.name, "role": row.role, "revoked_at": now.isoformat()}
