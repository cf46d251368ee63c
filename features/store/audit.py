"""Append-only, hash-chained audit log.

Each row's hash covers its own fields and the previous row's hash; a head record holds the newest
hash. Editing, deleting or reordering any row, or dropping rows at the end, breaks verification.
Appends are serialised (a PostgreSQL advisory lock; on SQLite the write lock is taken before the head is read).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import sqlalchemy as sa

from features.store.tables import metadata

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(40), nullable=False),  # ISO 8601 text: hashed exactly as stored
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(256), nullable=False),
    sa.Column("detail_json", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# The hash of the newest audit row, so that deleting rows at the tail is detected too.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

GENESIS = "0" * 64
_LOCK_ID = 545_424  # advisory lock key for audit appends
_SQLITE_TAKE_WRITE_LOCK = f"UPDATE {audit_head.name} SET seq = seq WHERE id = 1"


# Built once: every quote appends a row, and building the statements cost more than running them.
_READ_HEAD = sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
_INSERT_ROW = audit_log.insert()
_MOVE_HEAD = (audit_head.update().where(audit_head.c.id == 1)
              .values(seq=sa.bindparam("new_seq"), hash=sa.bindparam("new_hash")))


def _canonical(detail: dict) -> str:
    return json.dumps(detail, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def row_hash(prev_hash: str, seq: int, at: str, actor: str, action: str, subject: str, detail_json: str) -> str:
    payload = "\x1f".join([prev_hash, str(seq), at, actor, action, subject, detail_json])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def append(conn: sa.Connection, actor: str, action: str, subject: str, detail: dict | None = None) -> int:
    """Append one audit row inside the caller's transaction; returns its sequence number."""
    return append_many(conn, [(actor, action, subject, detail)])[-1]


Entry = tuple[str, str, str, dict | None]  # actor, action, subject, detail


def append_many(conn: sa.Connection, entries: list[Entry]) -> list[int]:
    """Append audit rows, chained in the given order, inside the caller's transaction (the head is read and
    moved once for all of them: a group of quotes pays one look-up); returns their sequence numbers."""
    if not entries:
        return []
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})
    elif conn.dialect.name == "sqlite":
        # pysqlite opens the write transaction at the first write, not at a read: a no-op write first,
        # so that no other writer can read the same head between our read and our insert
        conn.exec_driver_sql(_SQLITE_TAKE_WRITE_LOCK)  # plain SQL: nothing to compile on the quote path
    head = conn.execute(_READ_HEAD).first()
    seq, digest = (head.seq, head.hash) if head else (0, GENESIS)
    rows = []
    for actor, action, subject, detail in entries:
        prev_hash, seq = digest, seq + 1
        at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        detail_json = _canonical(detail or {})
        digest = row_hash(prev_hash, seq, at, actor, action, subject, detail_json)
        rows.append({"seq": seq, "at": at, "actor": actor, "action": action, "subject": subject,
                     "detail_json": detail_json, "prev_hash": prev_hash, "hash": digest})
    conn.execute(_INSERT_ROW, rows)
    if head:
        conn.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": digest})
    else:
        conn.execute(audit_head.insert(), {"id": 1, "seq": seq, "hash": digest})
    return [r["seq"] for r in rows]


@dataclass
class Verification:
    ok: bool
    rows: int
    problems: list[str]

    def as_json(self) -> dict:
        return {"ok": self.ok, "rows": self.rows, "problems": self.problems}


def verify(conn: sa.Connection, limit_problems: int = 20) -> Verification:
    """Walk the chain from the start; report every break (up to `limit_problems`)."""
    problems: list[str] = []
    prev_hash, expected_seq, rows = GENESIS, 1, 0
    result = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).yield_per(10_000)
    for row in result:
        rows += 1
        if row.seq != expected_seq:
            problems.append(f"row {expected_seq}: missing (next row present is {row.seq})")
        if row.prev_hash != prev_hash:
            problems.append(f"row {row.seq}: previous-hash link broken (row deleted or reordered before it)")
        recomputed = row_hash(row.prev_hash, row.seq, row.at, row.actor, row.action, row.subject, row.detail_json)
        if recomputed != row.hash:
            problems.append(f"row {row.seq}: content does not match its hash (row edited)")
        prev_hash, expected_seq = row.hash, row.seq + 1
        if len(problems) >= limit_problems:
            break
    head = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).first()
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev_hash) and len(problems) < limit_problems:
        problems.append(f"chain ends at row {expected_seq - 1} but the head records row {head.seq} (rows removed)")
    if head is None and rows:
        problems.append("audit head record missing")
    return Verification(ok=not problems, rows=rows, problems=problems)
