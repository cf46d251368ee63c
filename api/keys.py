"""API keys: random bearer tokens stored only as sha256 hashes, each with one role."""

from __future__ import annotations

import datetime as dt
import hashlib
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


def hash_key(key: str) -> str:
    # Keys are 256-bit random tokens, so a plain sha256 is enough (no password stretching needed).
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(engine: sa.Engine, role: Role, name: str, created_by: str = "cli") -> str:
    """Create a key and return it; only its hash is stored, so this is the one time it is seen."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        key_id = conn.execute(
            api_keys.insert().values(
                name=name, role=role.value, key_hash=hash_key(key), key_prefix=key[:10], created_by=created_by,
                created_at=dt.datetime.now(dt.UTC),
            )
        ).inserted_primary_key[0]
        audit.append(conn, created_by, "key.create", f"key:{key_id}", {"name": name, "role": role.value})
    return key


def lookup(conn: sa.Connection, key: str) -> Principal | None:
    row = conn.execute(
        sa.select(api_keys.c.id, api_keys.c.name, api_keys.c.role).where(
            api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
        )
    ).first()
    return Principal(row.id, row.name, Role(row.role)) if row else None
