"""Change sets between two whitelists of a product, computed inside the database, and the change feed.

A whitelist's change set for a product is taken against its *base*: the product's published whitelist it
replaces. Three statements, each an `INSERT ... SELECT` over the two whitelists' primary keys, so no row
passes through Python whatever the size:

    entered   in the new whitelist, not in the base
    left      in the base, not in the new whitelist
    changed   in both, and a field the platform may see differs (`fields`: a bit per CHANGE_FIELDS entry)

A product's first whitelist has no base: every row entered. That set is not materialised; the feed reads
it straight from the whitelist's rows.

The feed of a product is every published whitelist's change set in publication order, each in credit-code
order; a position in it is (publication number, last credit code seen), so a page is one primary-key range
scan and a puller that keeps the cursor it was given sees each change exactly once.
"""

from __future__ import annotations

import functools
import operator
from collections import Counter
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from api.precredit import whitelist_rows as wrows
from api.tables import whitelist_changes, whitelist_rows

# (row field, stored column): bit i of `fields` is CHANGE_FIELDS[i]
CHANGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("grade", "grade"), ("tier", "tier"), ("limit_cny", "limit_cny"), ("rate_lo_pct", "rate_lo_bp"),
    ("rate_hi_pct", "rate_hi_bp"), ("rate_pct", "rate_bp"), ("guarantee_fee_pct", "fee_bp"),
    ("subsidy_pct", "subsidy_bp"), ("reasons", "reasons"),
)


def changed_fields(mask: int) -> list[str]:
    return [name for bit, (name, _) in enumerate(CHANGE_FIELDS) if mask & (1 << bit)]


def compute(conn: sa.Connection, whitelist_id: int, product: str, base_id: int | None,
            fields: Sequence[str]) -> dict[str, Any]:
    """(Re)compute the change set of `whitelist_id` against `base_id` for `product`, store it, and return its
    counts: per kind, per grade (the new grade; the old one for rows that left) and the grade moves."""
    c = whitelist_changes
    conn.execute(c.delete().where(c.c.whitelist_id == whitelist_id, c.c.product == product))
    if base_id is None:
        return _first_counts(conn, whitelist_id, product)
    new, old = whitelist_rows.alias("n"), whitelist_rows.alias("o")

    def same_key(a: Any, b: Any, wid: int) -> Any:
        return sa.and_(b.c.whitelist_id == wid, b.c.product == product, b.c.credit_code == a.c.credit_code)

    columns = ["whitelist_id", "product", "credit_code", "kind", "fields"]
    wid, prod = sa.literal(whitelist_id, sa.Integer), sa.literal(product, sa.String)
    zero = sa.literal(0, sa.Integer)
    for kind, here, there, there_id in (("entered", new, old, base_id), ("left", old, new, whitelist_id)):
        here_id = whitelist_id if here is new else base_id
        missing = ~sa.exists().where(same_key(here, there, there_id))
        query = sa.select(wid, prod, here.c.credit_code, sa.literal(kind, sa.String), zero).where(
            here.c.whitelist_id == here_id, here.c.product == product, missing)
        conn.execute(c.insert().from_select(columns, query))
    visible = set(fields)
    terms = [sa.case((new.c[col].is_distinct_from(old.c[col]), 1 << bit), else_=0)
             for bit, (name, col) in enumerate(CHANGE_FIELDS) if name in visible]
    if terms:
        mask = functools.reduce(operator.add, terms).label("mask")
        diff = (sa.select(new.c.credit_code, mask).select_from(new.join(old, same_key(new, old, base_id)))
                .where(new.c.whitelist_id == whitelist_id, new.c.product == product).subquery())
        query = sa.select(wid, prod, diff.c.credit_code, sa.literal("changed", sa.String), diff.c.mask).where(
            diff.c.mask != 0)
        conn.execute(c.insert().from_select(columns, query))
    return counts(conn, whitelist_id, product, base_id)


def _first_counts(conn: sa.Connection, whitelist_id: int, product: str) -> dict[str, Any]:
    t = whitelist_rows
    rows = conn.execute(sa.select(t.c.grade, sa.func.count()).where(
        t.c.whitelist_id == whitelist_id, t.c.product == product).group_by(t.c.grade)).all()
    by_grade = {g: {"entered": int(n)} for g, n in sorted(rows)}
    return {"base_whitelist_id": None, "entered": sum(v["entered"] for v in by_grade.values()), "left": 0,
            "changed": 0, "by_grade": by_grade, "grade_moves": {}, "fields": {}}


def counts(conn: sa.Connection, whitelist_id: int, product: str, base_id: int) -> dict[str, Any]:
    """Counts of a stored change set (rows joined back for their grades; only the changes are read)."""
    c = whitelist_changes
    new, old = whitelist_rows.alias("n"), whitelist_rows.alias("o")
    query = (sa.select(c.c.kind, c.c.fields, old.c.grade.label("old"), new.c.grade.label("new"), sa.func.count())
             .select_from(c.outerjoin(new, sa.and_(new.c.whitelist_id == whitelist_id, new.c.product == product,
                                                   new.c.credit_code == c.c.credit_code))
                          .outerjoin(old, sa.and_(old.c.whitelist_id == base_id, old.c.product == product,
                                                  old.c.credit_code == c.c.credit_code)))
             .where(c.c.whitelist_id == whitelist_id, c.c.product == product)
             .group_by(c.c.kind, c.c.fields, old.c.grade, new.c.grade))
    kinds: Counter[str] = Counter()
    by_grade: dict[str, Counter[str]] = {}
    moves: Counter[str] = Counter()
    fields: Counter[str] = Counter()
    for kind, mask, was, now, n in conn.execute(query):
        n = int(n)
        kinds[kind] += n
        grade = was if kind == "left" else now
        by_grade.setdefault(grade, Counter())[kind] += n
        if kind == "changed":
            for name in changed_fields(mask):
                fields[name] += n
            if was != now:
                moves[f"{was}->{now}"] += n
    return {"base_whitelist_id": base_id, "entered": kinds["entered"], "left": kinds["left"],
            "changed": kinds["changed"], "by_grade": {g: dict(v) for g, v in sorted(by_grade.items())},
            "grade_moves": dict(sorted(moves.items())), "fields": dict(sorted(fields.items()))}


def page(conn: sa.Connection, whitelist_id: int, product: str, base_id: int | None, after: str | None,
         limit: int) -> list[tuple[str, str, int, Any, Any]]:
    """Up to `limit` changes of one whitelist after credit code `after`: (credit code, kind, fields mask,
    new row or None, old row or None); rows as `whitelist_rows.page` returns them."""
    if base_id is None:  # the product's first whitelist: every row entered
        view = wrows.ProductView(whitelist_id, product, "", None, ())
        return [(r.credit_code, "entered", 0, r, None) for r in wrows.page(conn, view, after, limit)]
    c = whitelist_changes
    query = sa.select(c.c.credit_code, c.c.kind, c.c.fields).where(c.c.whitelist_id == whitelist_id,
                                                                    c.c.product == product)
    if after is not None:
        query = query.where(c.c.credit_code > after)
    changes = conn.execute(query.order_by(c.c.credit_code).limit(limit)).all()
    codes = [r.credit_code for r in changes]
    new = wrows.rows_by_code(conn, whitelist_id, product, codes)
    old = wrows.rows_by_code(conn, base_id, product, codes)
    return [(r.credit_code, r.kind, r.fields, new.get(r.credit_code), old.get(r.credit_code)) for r in changes]


def discard(conn: sa.Connection, whitelist_id: int) -> None:
    conn.execute(whitelist_changes.delete().where(whitelist_changes.c.whitelist_id == whitelist_id))
