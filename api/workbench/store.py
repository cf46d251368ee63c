"""Product versions in the store, under maker-checker.

Lifecycle (stored status in capitals, the rest follows from dates):

    DRAFT --submit--> SUBMITTED --approve (another person)--> APPROVED --(effective date)--> active
          \\                    \\--reject--> REJECTED                 scheduled until its date,
           \\--reject--> REJECTED                                      superseded by a later one

A version's body is the definition's canonical JSON in `config_blobs`, named by its sha256 (the hash a
quote's snapshot records, so replay finds it there). The definitions quotes use are the seed versions
(`products.catalogue.load_catalogue()`: the packaged files and INDEXLOAN_PRODUCTS_DIR's)
followed by the approved versions in the order of
approval; `api.quoting.versions.definitions_in_force` picks per product the latest effective date on or
before a quote's as-of date (on a tie, the later approval). `epoch()` (the number of approvals) is part of
every quoting process's freshness mark, so a new approval reaches every worker without a restart.

Every step is one transaction with its hash-chained audit row (`product.draft|submit|approve|reject`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from api.quoting.snapshot import canonical_json
from api.quoting.versions import definition_sha, definitions_in_force
from api.tables import config_blobs
from api.workbench.tables import product_versions
from features.store import audit
from products.catalogue import load_catalogue, parse_definition
from products.schema import ProductDefinition

MAX_NAME = 128


class ProductVersionError(ValueError):
    """A lifecycle step that cannot be done; `status` is the HTTP status it maps to, `field` the input at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class VersionRecord:
    id: int
    code: str
    version: str
    effective_date: dt.date
    sha256: str
    status: str  # stored: draft, submitted, approved, rejected
    note: str | None
    created_by: str
    created_at: dt.datetime
    submitted_by: str | None
    submitted_at: dt.datetime | None
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_reason: str | None
    approval_no: int | None

    @classmethod
    def from_row(cls, row: Any) -> VersionRecord:
        r = row._mapping
        return cls(int(r["id"]), r["code"], r["version"], r["effective_date"], r["sha256"], r["status"], r["note"],
                   r["created_by"], _utc(r["created_at"]), r["submitted_by"], _utc(r["submitted_at"]),
                   r["decided_by"], _utc(r["decided_at"]), r["decision_reason"], r["approval_no"])

    def to_json(self, state: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "origin": "store", "code": self.code, "version": self.version,
                "effective_date": self.effective_date.isoformat(), "sha256": self.sha256,
                "status": state or self.status, "note": self.note, "created_by": self.created_by,
                "created_at": _iso(self.created_at), "submitted_by": self.submitted_by,
                "submitted_at": _iso(self.submitted_at), "decided_by": self.decided_by,
                "decided_at": _iso(self.decided_at), "decision_reason": self.decision_reason,
                "approval_no": self.approval_no}


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands timestamps back without their zone; they were stored in UTC."""
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _who(name: str | None, what: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ProductVersionError(422, f"{what} is required (who does this); 必须填写操作人", "by")
    if len(name) > MAX_NAME:
        raise ProductVersionError(422, f"{what} is longer than {MAX_NAME} characters; 操作人名称过长", "by")
    return name


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.casefold() == b.casefold()


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{'limit': {'max_cny': 5}} -> {'limit.max_cny': 5}; lists by position ('grades[0].min_index')."""
    out: dict[str, Any] = {}
    if isinstance(data, dict) and data:
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list) and data:
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}[{i}]"))
    else:
        out[prefix] = data
    return out


def diff_definitions(before: ProductDefinition, after: ProductDefinition) -> list[dict[str, Any]]:
    """Every path whose value differs: {path, before, after} (None where a path exists on one side only)."""
    a = flatten(before.model_dump(mode="json"))
    b = flatten(after.model_dump(mode="json"))
    return [{"path": p, "before": a.get(p), "after": b.get(p)}
            for p in list(dict.fromkeys([*a, *b])) if a.get(p) != b.get(p)]


class ProductVersions:
    """The product versions of one store: the lifecycle steps and what the quoting core reads."""

    def __init__(self, engine: sa.Engine, seeds: Sequence[ProductDefinition] | None = None) -> None:
        self.engine = engine
        self._seeds = list(seeds) if seeds is not None else None

    @property
    def seeds(self) -> list[ProductDefinition]:
        """The initial versions: the files of the configured folder (INDEXLOAN_PRODUCTS_DIR) or the shipped ones."""
        if self._seeds is None:
            self._seeds = list(load_catalogue().values())
        return self._seeds

    # ------------------------------------------------------------------ reading

    def epoch(self, conn: sa.Connection | None = None) -> int:
        """The number of approvals so far: changes exactly when the published definitions may have changed."""
        query = sa.select(sa.func.coalesce(sa.func.max(product_versions.c.approval_no), 0))
        if conn is not None:
            return int(conn.execute(query).scalar_one())
        with self.engine.connect() as c:
            return int(c.execute(query).scalar_one())

    def records(self, code: str | None = None) -> list[VersionRecord]:
        query = sa.select(product_versions).order_by(product_versions.c.id)
        if code is not None:
            query = query.where(product_versions.c.code == code)
        with self.engine.connect() as conn:
            return [VersionRecord.from_row(r) for r in conn.execute(query)]

    def get(self, version_id: int) -> VersionRecord:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(product_versions).where(product_versions.c.id == version_id)).first()
        if row is None:
            raise ProductVersionError(404, f"no product version {version_id}; 无此产品版本", "id")
        return VersionRecord.from_row(row)

    def definition(self, version_id: int) -> ProductDefinition:
        digest = self.get(version_id).sha256
        return self._bodies([digest])[digest]

    def _bodies(self, digests: Sequence[str]) -> dict[str, ProductDefinition]:
        if not digests:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(config_blobs.c.sha256, config_blobs.c.body_json)
                                .where(config_blobs.c.sha256.in_(list(set(digests))))).all()
        return {r.sha256: parse_definition(json.loads(r.body_json), f"config blob {r.sha256[:12]}", stored=True)
                for r in rows}

    def published(self) -> tuple[int, list[ProductDefinition]]:
        """(epoch, every version quotes may use): the seeds, then the approved versions in approval order."""
        with self.engine.connect() as conn:
            epoch = self.epoch(conn)
            rows = conn.execute(sa.select(product_versions.c.sha256)
                                .where(product_versions.c.status == "approved")
                                .order_by(product_versions.c.approval_no)).scalars().all()
        bodies = self._bodies(rows)
        return epoch, [*self.seeds, *(bodies[s] for s in rows)]

    def history(self, code: str | None = None, today: dt.date | None = None) -> list[dict[str, Any]]:
        """Every version (seeds first, then the store's in creation order) with its status on `today`:
        draft, submitted, rejected, scheduled, active or superseded."""
        today = today or dt.date.today()
        records = self.records()
        approved = sorted((r for r in records if r.status == "approved"), key=lambda r: r.approval_no or 0)
        bodies = self._bodies([r.sha256 for r in approved])
        entries: list[tuple[ProductDefinition, dict[str, Any] | VersionRecord]] = []
        for seed in self.seeds:
            entries.append((seed, {"id": None, "origin": "seed", "code": seed.code, "version": seed.version,
                                   "effective_date": seed.effective_date.isoformat(), "sha256": definition_sha(seed)}))
        entries += [(bodies[r.sha256], r) for r in approved]
        chosen = definitions_in_force([d for d, _ in entries], today)

        def state(d: ProductDefinition) -> str:
            if d.effective_date > today:
                return "scheduled"
            return "active" if chosen.get(d.code) is d else "superseded"

        out = []
        for d, info in entries:
            out.append(info.to_json(state(d)) if isinstance(info, VersionRecord) else {**info, "status": state(d)})
        out += [r.to_json() for r in records if r.status != "approved"]
        seeds = [e for e in out if e["origin"] == "seed"]
        stored = sorted((e for e in out if e["origin"] == "store"), key=lambda e: e["id"])
        return [e for e in [*seeds, *stored] if code is None or e["code"] == code]

    def active(self, code: str, as_of: dt.date) -> ProductDefinition:
        """The version of `code` in force on `as_of` (seeds and approved versions)."""
        chosen = definitions_in_force(self.published()[1], as_of).get(code)
        if chosen is None:
            raise ProductVersionError(404, f"no version of product {code!r} is in force on {as_of.isoformat()}; "
                                           "该日期无生效版本", "against")
        return chosen

    # ------------------------------------------------------------------ the lifecycle

    def draft(self, definition: ProductDefinition, by: str, note: str | None = None) -> VersionRecord:
        """Store a validated definition as a draft (its body content-addressed in config_blobs)."""
        by = _who(by, "the author")
        digest = definition_sha(definition)
        clash = [r for r in self.records(definition.code) if r.status != "rejected"]
        same_body = next((r for r in clash if r.sha256 == digest), None)
        if same_body is not None:
            raise ProductVersionError(409, f"this definition is already version {same_body.id} "
                                           f"({same_body.status}); 该版本内容已存在", "definition")
        seed_versions = {s.version for s in self.seeds if s.code == definition.code}
        if definition.version in seed_versions or any(r.version == definition.version for r in clash):
            raise ProductVersionError(409, f"product {definition.code} already has a version {definition.version!r}: "
                                           "give the draft a new `version`; 版本号已被使用", "version")
        now = _now()
        with self.engine.begin() as conn:
            if conn.execute(sa.select(config_blobs.c.sha256).where(config_blobs.c.sha256 == digest)).first() is None:
                conn.execute(config_blobs.insert().values(
                    sha256=digest, kind="product", code=definition.code, version=definition.version,
                    body_json=canonical_json(definition.model_dump(mode="json"), sort_keys=False), created_at=now))
            version_id = conn.execute(product_versions.insert().values(
                code=definition.code, version=definition.version, effective_date=definition.effective_date,
                sha256=digest, status="draft", note=note, created_by=by, created_at=now)).inserted_primary_key[0]
            audit.append(conn, by, "product.draft", f"product_version:{version_id}",
                         {"code": definition.code, "version": definition.version, "sha256": digest,
                          "effective_date": definition.effective_date.isoformat(), "note": note})
        return self.get(int(version_id))

    def _not_backdated(self, record: VersionRecord, today: dt.date) -> None:
        if record.effective_date < today:
            raise ProductVersionError(422, f"version {record.id} takes effect on {record.effective_date.isoformat()}, "
                                           f"before today ({today.isoformat()}): a version never applies "
                                           "retroactively; draft it again with a later effective_date; "
                                           "生效日期不能早于今天", "effective_date")

    def _step(self, conn: sa.Connection, record: VersionRecord, from_status: str, **values: Any) -> None:
        # a conditional update: a concurrent step on the same version fails here instead of applying twice
        done = conn.execute(product_versions.update().where(product_versions.c.id == record.id,
                                                            product_versions.c.status == from_status).values(**values))
        if done.rowcount != 1:
            raise ProductVersionError(409, f"version {record.id} is no longer {from_status}: it was changed "
                                           "concurrently; 该版本已被他人处理")

    def _detail(self, record: VersionRecord, **extra: Any) -> dict[str, Any]:
        return {"code": record.code, "version": record.version, "sha256": record.sha256,
                "effective_date": record.effective_date.isoformat(), **extra}

    def submit(self, version_id: int, by: str, today: dt.date | None = None) -> VersionRecord:
        by = _who(by, "the submitter")
        record = self.get(version_id)
        if record.status != "draft":
            raise ProductVersionError(409, f"version {record.id} is {record.status}; only a draft is submitted; "
                                           "只有草稿可以提交")
        self._not_backdated(record, today or dt.date.today())
        with self.engine.begin() as conn:
            self._step(conn, record, "draft", status="submitted", submitted_by=by, submitted_at=_now())
            audit.append(conn, by, "product.submit", f"product_version:{record.id}", self._detail(record))
        return self.get(record.id)

    def approve(self, version_id: int, by: str, reason: str | None = None, today: dt.date | None = None
                ) -> VersionRecord:
        """Maker-checker: the approver is neither the submitter nor the author. Effective from its date."""
        by = _who(by, "the approver")
        record = self.get(version_id)
        if record.status != "submitted":
            raise ProductVersionError(409, f"version {record.id} is {record.status}; only a submitted version is "
                                           "approved; 只有已提交的版本可以审批")
        if _same(by, record.submitted_by) or _same(by, record.created_by):
            raise ProductVersionError(403, f"maker-checker: {by} drafted or submitted version {record.id} and cannot "
                                           "also approve it; a different person must approve "
                                           "(提交人不能审批自己提交的版本)")
        self._not_backdated(record, today or dt.date.today())
        reason = (reason or "").strip() or None
        try:
            with self.engine.begin() as conn:
                number = self.epoch(conn) + 1  # unique: two concurrent approvals cannot both take it
                self._step(conn, record, "submitted", status="approved", decided_by=by, decided_at=_now(),
                           decision_reason=reason, approval_no=number)
                audit.append(conn, by, "product.approve", f"product_version:{record.id}",
                             self._detail(record, approval_no=number, submitted_by=record.submitted_by,
                                          reason=reason))
        except sa.exc.IntegrityError:
            raise ProductVersionError(409, "another version was approved at the same moment; approve again; "
                                           "请重新审批") from None
        return self.get(record.id)

    def reject(self, version_id: int, by: str, reason: str) -> VersionRecord:
        by = _who(by, "the person rejecting")
        reason = (reason or "").strip()
        if not reason:
            raise ProductVersionError(422, "a reason is required to reject a version; 驳回必须说明理由", "reason")
        record = self.get(version_id)
        if record.status not in ("draft", "submitted"):
            raise ProductVersionError(409, f"version {record.id} is {record.status}; only a draft or a submitted "
                                           "version is rejected; 该版本不能驳回")
        with self.engine.begin() as conn:
            self._step(conn, record, record.status, status="rejected", decided_by=by, decided_at=_now(),
                       decision_reason=reason)
            audit.append(conn, by, "product.reject", f"product_version:{record.id}",
                         self._detail(record, from_status=record.status, reason=reason))
        return self.get(record.id)

    def diff(self, version_id: int, against: str = "active", today: dt.date | None = None) -> dict[str, Any]:
        """What a version changes against the version in force today (`active`) or another version id."""
        record = self.get(version_id)
        after = self.definition(record.id)
        if against == "active":
            before = self.active(record.code, today or dt.date.today())
            label = f"active {before.code} v{before.version}"
        else:
            try:
                other = self.get(int(against))
            except ValueError:
                raise ProductVersionError(422, f"--against must be `active` or a version id, got {against!r}",
                                          "against") from None
            before = self.definition(other.id)
            label = f"version {other.id} ({other.code} v{other.version})"
        return {"version": record.to_json(), "against": label, "against_sha256": definition_sha(before),
                "changes": diff_definitions(before, after)}
