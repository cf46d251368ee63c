"""Pre-credit whitelists (预授信白名单): a finished pre-credit run, proposed by a risk analyst as the whitelist of
one or more products for its as-of date, published by a different person, pulled by the platform.

    propose   a succeeded batch job (or a run file with its summary) -> status "importing": its eligible rows
              streamed into `whitelist_rows` batch by batch -> the change set against each product's
              current published whitelist (a preview) -> "proposed"                 audit whitelist.propose
    publish   by someone other than the proposer (maker-checker); the change sets are brought up to date
              if another whitelist was published meanwhile; each product's previous whitelist is
              superseded (and stays retrievable); publication number n+1             audit whitelist.publish
    reject    a proposal (or an import cut short) is dropped with a reason; its rows are deleted
                                                                                     audit whitelist.reject

The current whitelist of a product is its latest publication. The platform reads it page by page (keyset
cursor on the credit code, pinned to one whitelist), as a file, and as a change feed (`changes_page`).
Used by `api.http.routers.whitelists` and `indexloan whitelists ...`; every failure is a `WhitelistError`
carrying the HTTP status it maps to and, for bad input, the field.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from api.precredit import whitelist_changes as changes
from api.precredit import whitelist_rows as wrows
from api.tables import batch_jobs, config_blobs, whitelist_products, whitelist_rows, whitelists
from features.store import audit
from products.schema import ProductDefinition

DEFAULT_PAGE = 1000
MAX_PAGE = 10_000
_LOCK_ID = 17_017  # PostgreSQL advisory lock: publications one at a time
STATUSES = ("importing", "proposed", "published", "rejected")


class WhitelistError(Exception):
    """A refused whitelist operation: `status` is the HTTP status it maps to, `field` the input at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands timestamps back without their zone; they were stored in UTC."""
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def _who(name: str | None, what: str) -> str:
    name = (name or "").strip()
    if not name:
        raise WhitelistError(422, f"{what} is required (who does this)", "by")
    if len(name) > 128:
        raise WhitelistError(422, f"{what} is longer than 128 characters", "by")
    return name


def files_dir() -> Path:
    from features.settings import get_settings

    return get_settings().resolved_batch_dir / "whitelists"


# ------------------------------------------------------------------------------------- the run proposed


@dataclass(frozen=True)
class RunSource:
    """A finished pre-credit run: its output file, format, sha256 and summary (with the versions used)."""

    path: Path
    fmt: str
    sha256: str
    summary: dict[str, Any]
    job_id: str | None = None

    @property
    def as_of(self) -> dt.date:
        return dt.date.fromisoformat(self.summary["versions"]["as_of"])

    @property
    def products(self) -> list[str]:
        return list(self.summary["versions"]["products"])


def job_source(engine: sa.Engine, job_id: str) -> RunSource:
    with engine.connect() as conn:
        job = conn.execute(sa.select(batch_jobs).where(batch_jobs.c.job_id == job_id)).first()
    if job is None:
        raise WhitelistError(404, f"no batch job {job_id}", "job_id")
    if job.kind != "precredit":
        raise WhitelistError(409, f"batch job {job_id} is a {job.kind} job, not a pre-credit run", "job_id")
    if job.status != "succeeded":
        raise WhitelistError(409, f"batch job {job_id} is {job.status}: only a pre-credit job that has succeeded "
                                  "can be proposed as a whitelist", "job_id")
    path = Path(job.result_path)
    if not path.is_file():
        raise WhitelistError(410, f"the result file of batch job {job_id} is no longer on the server", "job_id")
    fmt = json.loads(job.request_json)["format"]
    return RunSource(path, fmt, job.result_sha256, json.loads(job.summary_json), job_id)


def file_source(path: Path) -> RunSource:
    """A run written by `indexloan batch precredit --out FILE`: the file and `<stem>.summary.json` beside it."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("parquet", "csv"):
        raise WhitelistError(422, f"a run file ends in .parquet or .csv, got {path.name!r}", "run")
    if not path.is_file():
        raise WhitelistError(404, f"no run file {path}", "run")
    summary_path = path.with_name(path.stem + ".summary.json")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        sha = summary["output"]["sha256"]
    except (OSError, ValueError, KeyError):
        raise WhitelistError(422, f"{summary_path.name} (the run's summary, written beside its output) is missing "
                                  "or unreadable", "run") from None
    return RunSource(path.resolve(), fmt, sha, summary, None)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _definition(engine: sa.Engine, code: str, sha: str, known: Sequence[ProductDefinition]) -> ProductDefinition:
    """The definition the run used, found by its content hash: among the known ones, else in the stored
    configuration blobs (kept for replay)."""
    from api.quoting.versions import definition_sha
    from products.catalogue import parse_definition

    for d in known:
        if d.code == code and definition_sha(d) == sha:
            return d
    with engine.connect() as conn:
        body = conn.execute(sa.select(config_blobs.c.body_json).where(config_blobs.c.sha256 == sha)).scalar()
    if body is None:
        raise WhitelistError(409, f"the run used a definition of {code} (sha256 {sha[:12]}...) that is no longer "
                                  "known: run the batch again under the definitions in force")
    return parse_definition(json.loads(body))


def _terms(engine: sa.Engine, source: RunSource, products: Sequence[str],
           definitions: Sequence[ProductDefinition] | None) -> dict[str, wrows.Terms]:
    from products.catalogue import load_catalogue

    known = list(definitions) if definitions is not None else list(load_catalogue().values())
    versions = source.summary["versions"]
    rates = versions["reference_rates"]["values"]
    return {p: wrows.Terms.of(_definition(engine, p, versions["products"][p]["sha256"], known), rates)
            for p in products}


# ------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ProductRecord:
    product: str
    product_version: str
    fields: list[str]
    expiry_days: int
    expires_on: dt.date | None
    rows: int
    base_id: int | None
    changes: dict[str, Any] | None
    superseded_by: int | None

    def to_json(self) -> dict[str, Any]:
        return {"product": self.product, "product_version": self.product_version, "fields": self.fields,
                "expiry_days": self.expiry_days,
                "expires_on": self.expires_on.isoformat() if self.expires_on else None, "rows": self.rows,
                "base_whitelist_id": self.base_id, "changes": self.changes, "superseded_by": self.superseded_by}


@dataclass(frozen=True)
class Whitelist:
    id: int
    status: str
    as_of: dt.date
    job_id: str | None
    source_sha256: str
    proposed_by: str
    proposed_at: dt.datetime
    note: str | None
    rows: int | None
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_note: str | None
    publication_no: int | None
    summary: dict[str, Any]
    products: dict[str, ProductRecord]

    def to_json(self) -> dict[str, Any]:
        return {"whitelist_id": self.id, "status": self.status, "as_of": self.as_of.isoformat(),
                "job_id": self.job_id, "source_sha256": self.source_sha256, "proposed_by": self.proposed_by,
                "proposed_at": self.proposed_at.isoformat(), "note": self.note, "rows": self.rows,
                "decided_by": self.decided_by, "decided_at": self.decided_at.isoformat() if self.decided_at else None,
                "decision_note": self.decision_note, "publication_no": self.publication_no,
                "products": {p: {**r.to_json(), **self.summary.get(p, {})} for p, r in self.products.items()}}


def _records(conn: sa.Connection, rows: Sequence[Any]) -> list[Whitelist]:
    if not rows:
        return []
    ids = [r.id for r in rows]
    wp = whitelist_products
    per: dict[int, dict[str, ProductRecord]] = {i: {} for i in ids}
    for p in conn.execute(sa.select(wp).where(wp.c.whitelist_id.in_(ids)).order_by(wp.c.whitelist_id, wp.c.product)):
        per[p.whitelist_id][p.product] = ProductRecord(
            p.product, p.product_version, json.loads(p.fields_json), p.expiry_days, p.expires_on, p.rows,
            p.base_id, json.loads(p.changes_json) if p.changes_json else None, p.superseded_by)
    return [Whitelist(r.id, r.status, r.as_of, r.job_id, r.source_sha256, r.proposed_by, _utc(r.proposed_at), r.note,
                      r.rows, r.decided_by, _utc(r.decided_at), r.decision_note, r.publication_no,
                      json.loads(r.summary_json) if getattr(r, "summary_json", None) else {}, per[r.id])
            for r in rows]


def get(engine: sa.Engine, whitelist_id: int) -> Whitelist:
    with engine.connect() as conn:
        row = conn.execute(sa.select(whitelists).where(whitelists.c.id == whitelist_id)).first()
        if row is None:
            raise WhitelistError(404, f"no whitelist {whitelist_id}", "whitelist_id")
        return _records(conn, [row])[0]


def list_all(engine: sa.Engine, status: str | None = None, product: str | None = None,
             limit: int = 100) -> list[Whitelist]:
    """Whitelists, newest first, optionally of one status or covering one product."""
    query = sa.select(whitelists)
    if status is not None:
        query = query.where(whitelists.c.status == status)
    if product is not None:
        query = query.where(whitelists.c.id.in_(sa.select(whitelist_products.c.whitelist_id).where(
            whitelist_products.c.product == product)))
    with engine.connect() as conn:
        return _records(conn, conn.execute(query.order_by(whitelists.c.id.desc()).limit(limit)).all())


def _current_ids(conn: sa.Connection, products: Sequence[str] | None = None) -> dict[str, int]:
    """Per product, its current (latest published) whitelist."""
    wp, w = whitelist_products, whitelists
    query = (sa.select(wp.c.product, sa.func.max(w.c.publication_no))
             .select_from(wp.join(w, w.c.id == wp.c.whitelist_id)).where(w.c.status == "published")
             .group_by(wp.c.product))
    if products is not None:
        query = query.where(wp.c.product.in_(list(products)))
    latest = dict(conn.execute(query).all())
    if not latest:
        return {}
    ids = dict(conn.execute(sa.select(w.c.publication_no, w.c.id).where(w.c.publication_no.in_(list(latest.values())))
                            ).all())
    return {p: ids[n] for p, n in sorted(latest.items())}


# ------------------------------------------------------------------------------------- propose


@dataclass(frozen=True)
class Proposal:
    """A proposal whose record exists (status "importing") and whose rows are still to be loaded."""

    whitelist_id: int
    source: RunSource
    terms: dict[str, wrows.Terms]
    by: str
    note: str | None


def propose(engine: sa.Engine, source: RunSource, products: Sequence[str] | None, by: str, note: str | None = None,
            definitions: Sequence[ProductDefinition] | None = None) -> Whitelist:
    """Import the run's eligible rows as a proposed whitelist of `products` (default: every product of the
    run) for the run's as-of date, with its change set against each product's current whitelist."""
    return complete_proposal(engine, begin_proposal(engine, source, products, by, note, definitions))


def begin_proposal(engine: sa.Engine, source: RunSource, products: Sequence[str] | None, by: str,
                   note: str | None = None, definitions: Sequence[ProductDefinition] | None = None) -> Proposal:
    """Every check a proposal goes through (who, products, no pending proposal of the same run, the file's
    sha256, the definitions it used), then its record, status "importing". Quick: no row is read yet."""
    by = _who(by, "the proposer")
    if note is not None and len(note) > 2000:
        raise WhitelistError(422, "note is longer than 2000 characters", "note")
    in_run = source.products
    wanted = list(dict.fromkeys(products)) if products else in_run
    if not wanted:
        raise WhitelistError(422, "name at least one product", "products")
    missing = [p for p in wanted if p not in in_run]
    if missing:
        raise WhitelistError(422, f"not in this run: {', '.join(missing)}; the run scored {', '.join(in_run)}",
                             "products")
    field = "job_id" if source.job_id else "run"
    with engine.connect() as conn:
        pending = conn.execute(sa.select(whitelists.c.id, whitelists.c.status, whitelist_products.c.product)
                               .select_from(whitelists.join(whitelist_products,
                                                            whitelist_products.c.whitelist_id == whitelists.c.id))
                               .where(whitelists.c.source_sha256 == source.sha256,
                                      whitelists.c.status.in_(("importing", "proposed")),
                                      whitelist_products.c.product.in_(wanted))).first()
    if pending is not None:
        raise WhitelistError(409, f"this run is already proposed as whitelist {pending.id} ({pending.status}) "
                                  f"for {pending.product}: publish or reject that one first", field)
    if _file_sha256(source.path) != source.sha256:
        raise WhitelistError(409, f"the run's output {source.path.name} no longer matches the sha256 recorded "
                                  "when it finished; it cannot be proposed", field)
    terms = _terms(engine, source, wanted, definitions)
    with engine.begin() as conn:
        whitelist_id = conn.execute(whitelists.insert().values(
            status="importing", as_of=source.as_of, job_id=source.job_id, source_path=str(source.path),
            source_sha256=source.sha256, versions_json=json.dumps(source.summary["versions"], ensure_ascii=False),
            proposed_by=by, proposed_at=_now(), note=note, rows=0)).inserted_primary_key[0]
        for p, t in terms.items():
            conn.execute(whitelist_products.insert().values(
                whitelist_id=whitelist_id, product=p, product_version=t.version,
                definition_sha256=source.summary["versions"]["products"][p]["sha256"],
                fields_json=wrows.fields_json(t.fields), expiry_days=t.expiry_days, rows=0))
    return Proposal(whitelist_id, source, terms, by, note)


def complete_proposal(engine: sa.Engine, proposal: Proposal) -> Whitelist:
    """Stream the run's rows in (progress in `whitelists.rows`), compute the change preview, and make the
    whitelist "proposed" (audited). A run that cannot be read rejects the proposal with the reason."""
    whitelist_id, source, terms, by, note = (proposal.whitelist_id, proposal.source, proposal.terms, proposal.by,
                                             proposal.note)

    def progress(conn: sa.Connection, rows: int) -> None:
        conn.execute(whitelists.update().where(whitelists.c.id == whitelist_id).values(rows=rows))

    try:
        counts = wrows.load_run(engine, whitelist_id, source.path, source.fmt, terms, progress)
    except (wrows.RunFileError, OSError, ValueError) as error:
        _drop(engine, whitelist_id, by, f"import failed: {error}")
        raise WhitelistError(422, f"the run's output cannot be read as a whitelist: {error}",
                             "job_id" if source.job_id else "run") from None
    summary = {p: counts.as_json(p, t.grades) for p, t in terms.items()}
    total = sum(s["rows"] for s in summary.values())
    _analyze(engine, whitelist_rows.name)
    with engine.begin() as conn:
        _preview(conn, whitelist_id, terms)
        for p, s in summary.items():
            conn.execute(whitelist_products.update().where(whitelist_products.c.whitelist_id == whitelist_id,
                                                           whitelist_products.c.product == p).values(rows=s["rows"]))
        done = conn.execute(whitelists.update().where(whitelists.c.id == whitelist_id,
                                                      whitelists.c.status == "importing")
                            .values(status="proposed", rows=total, summary_json=json.dumps(summary))).rowcount
        if done == 1:
            audit.append(conn, by, "whitelist.propose", f"whitelist:{whitelist_id}", {
                "job_id": source.job_id, "source_sha256": source.sha256, "as_of": source.as_of.isoformat(),
                "products": {p: s["rows"] for p, s in summary.items()}, "note": note})
    if done != 1:  # rejected while it was being imported: what was loaded meanwhile goes too
        with engine.begin() as conn:
            conn.execute(whitelist_rows.delete().where(whitelist_rows.c.whitelist_id == whitelist_id))
            changes.discard(conn, whitelist_id)
        raise WhitelistError(409, f"whitelist {whitelist_id} was rejected while it was being imported")
    return get(engine, whitelist_id)


def _analyze(engine: sa.Engine, table: str) -> None:
    """Fresh planner statistics after a bulk load: PostgreSQL would otherwise plan the change set's joins for
    the table as it was before (a nested loop over a table it believes small), minutes instead of seconds."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(f"ANALYZE {table}")


def _preview(conn: sa.Connection, whitelist_id: int, terms: dict[str, wrows.Terms]) -> None:
    current = _current_ids(conn, list(terms))
    for p, t in terms.items():
        base = current.get(p)
        counted = changes.compute(conn, whitelist_id, p, base, t.fields)
        conn.execute(whitelist_products.update().where(whitelist_products.c.whitelist_id == whitelist_id,
                                                       whitelist_products.c.product == p)
                     .values(base_id=base, changes_json=json.dumps(counted)))


def _drop(engine: sa.Engine, whitelist_id: int, by: str, reason: str) -> None:
    with engine.begin() as conn:
        conn.execute(whitelist_rows.delete().where(whitelist_rows.c.whitelist_id == whitelist_id))
        changes.discard(conn, whitelist_id)
        conn.execute(whitelists.update().where(whitelists.c.id == whitelist_id).values(
            status="rejected", decided_by=by, decided_at=_now(), decision_note=reason))
        audit.append(conn, by, "whitelist.reject", f"whitelist:{whitelist_id}", {"reason": reason})


# ------------------------------------------------------------------------------------- decide


def _lock(conn: sa.Connection, whitelist_id: int) -> None:
    """Publications and rejections one at a time (and the whitelist's row re-read under the lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})
    else:  # SQLite: a write takes the database's write lock now, before anything is read
        conn.execute(whitelists.update().where(whitelists.c.id == whitelist_id).values(status=whitelists.c.status))


def publish(engine: sa.Engine, whitelist_id: int, by: str, note: str | None = None, tries: int = 5) -> Whitelist:
    """Publish a proposal; `by` must not be its proposer. Each product's previous whitelist is superseded."""
    by = _who(by, "the publisher")
    for _ in range(tries):
        record = get(engine, whitelist_id)
        if record.status != "proposed":
            raise WhitelistError(409, f"whitelist {whitelist_id} is {record.status}; only a proposed whitelist "
                                      "can be published")
        if record.proposed_by.casefold() == by.casefold():
            raise WhitelistError(403, f"maker-checker: {by} proposed whitelist {whitelist_id} and cannot also "
                                      "publish it; another risk approver must (提议人不能发布自己的提议)")
        with engine.connect() as conn:
            current = _current_ids(conn, list(record.products))
            stale = {p: current.get(p) for p, r in record.products.items() if r.base_id != current.get(p)}
        _check_not_older(engine, record, current)
        if stale:  # another whitelist was published since the preview: the change sets follow it
            with engine.begin() as conn:
                for p, base in stale.items():
                    counted = changes.compute(conn, whitelist_id, p, base, record.products[p].fields)
                    conn.execute(whitelist_products.update().where(
                        whitelist_products.c.whitelist_id == whitelist_id, whitelist_products.c.product == p)
                        .values(base_id=base, changes_json=json.dumps(counted)))
        with engine.begin() as conn:
            _lock(conn, whitelist_id)
            status = conn.execute(sa.select(whitelists.c.status).where(whitelists.c.id == whitelist_id)).scalar()
            if status != "proposed":
                raise WhitelistError(409, f"whitelist {whitelist_id} is {status}; it was decided concurrently")
            now_current = _current_ids(conn, list(record.products))
            bases = dict(conn.execute(sa.select(whitelist_products.c.product, whitelist_products.c.base_id).where(
                whitelist_products.c.whitelist_id == whitelist_id)).all())
            if any(bases[p] != now_current.get(p) for p in record.products):
                continue  # published meanwhile by someone else: bring the change sets up to date again
            number = (conn.execute(sa.select(sa.func.max(whitelists.c.publication_no))).scalar() or 0) + 1
            now = _now()
            conn.execute(whitelists.update().where(whitelists.c.id == whitelist_id).values(
                status="published", decided_by=by, decided_at=now, decision_note=note, publication_no=number))
            for p, r in record.products.items():
                conn.execute(whitelist_products.update().where(whitelist_products.c.whitelist_id == whitelist_id,
                                                               whitelist_products.c.product == p)
                             .values(expires_on=now.date() + dt.timedelta(days=r.expiry_days)))
                if bases[p] is not None:
                    conn.execute(whitelist_products.update().where(whitelist_products.c.whitelist_id == bases[p],
                                                                   whitelist_products.c.product == p)
                                 .values(superseded_by=whitelist_id))
            audit.append(conn, by, "whitelist.publish", f"whitelist:{whitelist_id}", {
                "publication_no": number, "as_of": record.as_of.isoformat(), "proposed_by": record.proposed_by,
                "note": note, "products": {p: {"rows": r.rows, "replaces": bases[p],
                                               "changes": _brief(r.changes)} for p, r in record.products.items()}})
        return get(engine, whitelist_id)
    raise WhitelistError(409, f"whitelist {whitelist_id}: other whitelists kept being published; try again")


def _brief(counted: dict[str, Any] | None) -> dict[str, int] | None:
    return None if counted is None else {k: counted[k] for k in ("entered", "left", "changed")}


def _check_not_older(engine: sa.Engine, record: Whitelist, current: dict[str, int]) -> None:
    if not current:
        return
    with engine.connect() as conn:
        dates = dict(conn.execute(sa.select(whitelists.c.id, whitelists.c.as_of).where(
            whitelists.c.id.in_(list(current.values())))).all())
    for p, wid in current.items():
        if dates[wid] > record.as_of:
            raise WhitelistError(409, f"whitelist {record.id} is as of {record.as_of.isoformat()}, older than "
                                      f"whitelist {wid} (as of {dates[wid].isoformat()}) now published for {p}")


def reject(engine: sa.Engine, whitelist_id: int, by: str, reason: str) -> Whitelist:
    """Drop a proposal (or an import cut short) with a reason; its rows are deleted, the record stays."""
    by = _who(by, "who rejects")
    reason = (reason or "").strip()
    if not reason:
        raise WhitelistError(422, "a reason is required: a rejection records why", "reason")
    if len(reason) > 2000:
        raise WhitelistError(422, "reason is longer than 2000 characters", "reason")
    with engine.begin() as conn:
        _lock(conn, whitelist_id)
        status = conn.execute(sa.select(whitelists.c.status).where(whitelists.c.id == whitelist_id)).scalar()
        if status is None:
            raise WhitelistError(404, f"no whitelist {whitelist_id}", "whitelist_id")
        if status not in ("proposed", "importing"):
            raise WhitelistError(409, f"whitelist {whitelist_id} is {status}; only a proposal can be rejected")
        conn.execute(whitelist_rows.delete().where(whitelist_rows.c.whitelist_id == whitelist_id))
        changes.discard(conn, whitelist_id)
        conn.execute(whitelists.update().where(whitelists.c.id == whitelist_id).values(
            status="rejected", decided_by=by, decided_at=_now(), decision_note=reason))
        audit.append(conn, by, "whitelist.reject", f"whitelist:{whitelist_id}", {"reason": reason, "was": status})
    return get(engine, whitelist_id)


# ------------------------------------------------------------------------------------- cursors


def encode_cursor(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, kind: str, product: str) -> dict[str, Any]:
    """An opaque cursor back to its position; a cursor of another listing or product is refused (422)."""
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or data.get("k") != kind or data.get("v") != 1:
        raise WhitelistError(422, f"cursor is not a cursor of this listing (give back the {kind} cursor a previous "
                                  "page returned)", "cursor")
    if data.get("p") != product:
        raise WhitelistError(422, f"cursor belongs to product {data.get('p')!r}, not {product!r}", "cursor")
    position = data.get("c")
    if not (position is None or (isinstance(position, str) and len(position) <= 18)):
        raise WhitelistError(422, "cursor is not a cursor of this listing", "cursor")
    for key in ("w", "n"):
        if key in data and not (isinstance(data[key], int) and not isinstance(data[key], bool)
                                and 0 <= data[key] < 2**31):
            raise WhitelistError(422, "cursor is not a cursor of this listing", "cursor")
    return data


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise WhitelistError(422, f"limit must be between 1 and {MAX_PAGE}", "limit")
    return limit


# ------------------------------------------------------------------------------------- the platform's reads


@dataclass(frozen=True)
class Published:
    """One product of one published whitelist, as the platform sees it."""

    view: wrows.ProductView
    publication_no: int
    as_of: dt.date
    published_at: dt.datetime
    rows: int
    superseded_by: int | None

    def to_json(self) -> dict[str, Any]:
        v = self.view
        return {"whitelist_id": v.whitelist_id, "product": v.product, "product_version": v.product_version,
                "publication_no": self.publication_no, "as_of": self.as_of.isoformat(),
                "published_at": self.published_at.isoformat(),
                "expires_on": v.expires_on.isoformat() if v.expires_on else None, "rows": self.rows,
                "fields": list(v.fields), "current": self.superseded_by is None,
                "changes_cursor": changes_cursor(v.product, self.publication_no)}


def _published(conn: sa.Connection, product: str, whitelist_id: int | None = None) -> Published:
    w, wp = whitelists, whitelist_products
    query = (sa.select(w.c.id, w.c.publication_no, w.c.as_of, w.c.decided_at, wp.c.product_version, wp.c.expires_on,
                       wp.c.fields_json, wp.c.rows, wp.c.superseded_by)
             .select_from(wp.join(w, w.c.id == wp.c.whitelist_id))
             .where(wp.c.product == product, w.c.status == "published"))
    if whitelist_id is None:
        row = conn.execute(query.order_by(w.c.publication_no.desc()).limit(1)).first()
        if row is None:
            raise WhitelistError(404, f"no whitelist of {product} has been published", "product")
    else:
        row = conn.execute(query.where(w.c.id == whitelist_id)).first()
        if row is None:
            raise WhitelistError(404, f"whitelist {whitelist_id} is not a published whitelist of {product}",
                                 "whitelist_id")
    view = wrows.ProductView(row.id, product, row.product_version, row.expires_on, tuple(json.loads(row.fields_json)))
    return Published(view, row.publication_no, row.as_of, _utc(row.decided_at), row.rows, row.superseded_by)


def published(engine: sa.Engine, product: str, whitelist_id: int | None = None) -> Published:
    with engine.connect() as conn:
        return _published(conn, product, whitelist_id)


def current_all(engine: sa.Engine) -> list[Published]:
    """Every product's current whitelist."""
    with engine.connect() as conn:
        return [_published(conn, p, wid) for p, wid in _current_ids(conn).items()]


def history(engine: sa.Engine, product: str) -> list[Published]:
    """The product's published whitelists, newest first (the first is the current one)."""
    w, wp = whitelists, whitelist_products
    with engine.connect() as conn:
        ids = conn.execute(sa.select(w.c.id).select_from(wp.join(w, w.c.id == wp.c.whitelist_id))
                           .where(wp.c.product == product, w.c.status == "published")
                           .order_by(w.c.publication_no.desc())).scalars().all()
        if not ids:
            raise WhitelistError(404, f"no whitelist of {product} has been published", "product")
        return [_published(conn, product, i) for i in ids]


@dataclass(frozen=True)
class RowsPage:
    whitelist: Published
    items: list[dict[str, Any]]
    next_cursor: str | None


def resolve_rows(engine: sa.Engine, product: str, whitelist_id: int | None, cursor: str | None
                 ) -> tuple[Published, str | None]:
    """The whitelist a rows request reads (pinned by its cursor) and the credit code to continue after."""
    after = None
    if cursor is not None:
        data = decode_cursor(cursor, "rows", product)
        if whitelist_id is not None and data.get("w") != whitelist_id:
            raise WhitelistError(422, "cursor belongs to another whitelist than whitelist_id", "cursor")
        whitelist_id, after = data.get("w"), data.get("c")
    return published(engine, product, whitelist_id), after


def rows_page(engine: sa.Engine, pub: Published, after: str | None, limit: int = DEFAULT_PAGE) -> RowsPage:
    """One page of a published whitelist's rows in credit-code order; `next_cursor` None on the last page."""
    limit = _limit(limit)
    with engine.connect() as conn:
        rows = wrows.page(conn, pub.view, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = (encode_cursor({"v": 1, "k": "rows", "p": pub.view.product, "w": pub.view.whitelist_id,
                             "c": rows[-1].credit_code}) if more else None)
    return RowsPage(pub, wrows.row_dicts(pub.view, rows), cursor)


def file_for(engine: sa.Engine, pub: Published, fmt: str, directory: Path | None = None) -> tuple[Path, str, int]:
    if fmt not in ("parquet", "csv"):
        raise WhitelistError(422, f"format must be parquet or csv, got {fmt!r}", "format")
    return wrows.ensure_file(engine, pub.view, fmt, directory or files_dir())


def audit_download(engine: sa.Engine, actor: str, pub: Published, fmt: str, sha: str) -> None:
    with engine.begin() as conn:
        audit.append(conn, actor, "whitelist.download", f"whitelist:{pub.view.whitelist_id}",
                     {"product": pub.view.product, "format": fmt, "sha256": sha, "rows": pub.rows})


# ------------------------------------------------------------------------------------- the change feed


def changes_cursor(product: str, publication_no: int, after: str | None = None) -> str:
    """The feed position after publication `publication_no` (or inside it, after credit code `after`)."""
    return encode_cursor({"v": 1, "k": "changes", "p": product, "n": publication_no, "c": after})


@dataclass(frozen=True)
class ChangesPage:
    product: str
    items: list[dict[str, Any]]
    next_cursor: str
    more: bool


def feed_position(cursor: str | None, product: str) -> tuple[int, str | None]:
    if cursor is None:
        return 0, None
    data = decode_cursor(cursor, "changes", product)
    if "n" not in data:
        raise WhitelistError(422, "cursor is not a cursor of this listing", "cursor")
    return data["n"], data.get("c")


def latest_publication(engine: sa.Engine, product: str) -> int:
    w, wp = whitelists, whitelist_products
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(w.c.publication_no))
                                .select_from(wp.join(w, w.c.id == wp.c.whitelist_id))
                                .where(wp.c.product == product, w.c.status == "published")).scalar() or 0)


def changes_page(engine: sa.Engine, product: str, cursor: str | None, limit: int = DEFAULT_PAGE) -> ChangesPage:
    """The product's changes after `cursor` (None: from its first publication), in publication order and
    credit-code order within one; `next_cursor` is where the next pull starts, also when nothing was new."""
    limit = _limit(limit)
    number, after = feed_position(cursor, product)
    w, wp = whitelists, whitelist_products
    items: list[dict[str, Any]] = []
    wanted = limit + 1  # one more than a page: whether there is more
    with engine.connect() as conn:
        while len(items) < wanted:
            query = (sa.select(w.c.id, w.c.publication_no, w.c.as_of, wp.c.base_id, wp.c.product_version,
                               wp.c.expires_on, wp.c.fields_json)
                     .select_from(wp.join(w, w.c.id == wp.c.whitelist_id))
                     .where(wp.c.product == product, w.c.status == "published"))
            query = (query.where(w.c.publication_no >= number) if after is not None
                     else query.where(w.c.publication_no > number))
            pub = conn.execute(query.order_by(w.c.publication_no).limit(1)).first()
            if pub is None:
                break
            if pub.publication_no != number:
                number, after = pub.publication_no, None
            fields = tuple(json.loads(pub.fields_json))
            new_view = wrows.ProductView(pub.id, product, pub.product_version, pub.expires_on, fields)
            old_view = _base_view(conn, product, pub.base_id, fields)
            found = changes.page(conn, pub.id, product, pub.base_id, after, wanted - len(items))
            for code, kind, mask, new, old in found:
                items.append({"publication_no": number, "whitelist_id": pub.id, "as_of": pub.as_of.isoformat(),
                              "kind": kind, "credit_code": code,
                              "changed": changes.changed_fields(mask) if kind == "changed" else [],
                              "row": wrows.row_dicts(new_view, [new])[0] if new is not None else None,
                              "previous": (wrows.row_dicts(old_view, [old])[0]
                                           if old is not None and old_view is not None else None)})
            after = None  # this publication is done (or the page is full): the loop ends or moves on
    more = len(items) > limit
    items = items[:limit]
    if more:
        next_cursor = changes_cursor(product, items[-1]["publication_no"], items[-1]["credit_code"])
    else:
        next_cursor = changes_cursor(product, number, None)
    return ChangesPage(product, items, next_cursor, more)


def _base_view(conn: sa.Connection, product: str, base_id: int | None, fields: tuple[str, ...]
               ) -> wrows.ProductView | None:
    if base_id is None:
        return None
    row = conn.execute(sa.select(whitelist_products.c.product_version, whitelist_products.c.expires_on).where(
        whitelist_products.c.whitelist_id == base_id, whitelist_products.c.product == product)).first()
    return wrows.ProductView(base_id, product, row.product_version, row.expires_on, fields)


__all__ = ["RunSource", "WhitelistError", "changes_page", "current_all", "file_for", "file_source", "get",
           "history", "job_source", "list_all", "propose", "publish", "reject", "rows_page"]
