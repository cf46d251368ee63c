"""The model registry: content-addressed artifacts, stages, maker-checker promotion, rollback.

Stages: candidate -> challenger -> champion -> retired. Registering makes a candidate; a candidate
becomes challenger on request; becoming champion needs a request by one person and an approval by
another. The replaced champion is retired ("replaced") and stays restorable: `rollback` puts the
previous champion back in one step (it already passed maker-checker once). Every change is a row
in `model_transitions` with who, when and why; artifacts are sha256-verified before any load.

Every change also appends a row to the hash-chained audit log in the same transaction, so a change
without its audit row (or the reverse) cannot be committed. The log is the service's (features.store.audit); a
caller may pass another `audit` hook with the same signature.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from features.store import audit
from training import artifacts as art
from training.errors import ArtifactIntegrityError, RegistryError, UnknownModelError
from training.registry_tables import models, promotion_requests, transitions

MIN_PREFIX = 6  # shortest id prefix accepted for a model id

# (conn, actor, action, subject, detail): appends one audit row inside the caller's transaction.
AuditHook = Callable[[sa.Connection, str, str, str, dict[str, Any]], object]


def chained_audit_log(conn: sa.Connection, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
    audit.append(conn, actor, action, subject, detail)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _who(name: str | None, what: str) -> str:
    name = (name or "").strip()
    if not name:
        raise RegistryError(f"{what} is required (who does this)")
    if len(name) > 64:
        raise RegistryError(f"{what} is longer than 64 characters")
    return name


def _why(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise RegistryError("a reason is required: every stage change records why")
    return reason


@dataclass(frozen=True)
class ModelRecord:
    id: str
    stage: str
    created_by: str
    created_at: dt.datetime
    operator: str
    training_started_at: dt.datetime
    training_finished_at: dt.datetime
    data_source: dict[str, Any]
    data_checksum: str
    time_window_start: dt.date | None
    time_window_end: dt.date | None
    rows: int
    code_version: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    model_metadata: dict[str, Any]
    artifact_dir: str
    digests: dict[str, str]

    @classmethod
    def from_row(cls, row: sa.Row) -> ModelRecord:
        r = row._mapping
        return cls(
            r["id"], r["stage"], r["created_by"], _utc(r["created_at"]), r["operator"],
            _utc(r["training_started_at"]), _utc(r["training_finished_at"]), r["data_source"], r["data_checksum"],
            r["time_window_start"], r["time_window_end"], int(r["rows"]), r["code_version"], r["params"],
            r["metrics"], r["model_metadata"], r["artifact_dir"],
            {art.MODEL_FILE: r["model_sha256"], art.CALIBRATOR_FILE: r["calibrator_sha256"],
             art.REPORT_FILE: r["report_sha256"], art.METADATA_FILE: r["metadata_sha256"]},
        )

    def summary(self) -> dict[str, Any]:
        oot = (self.metrics or {}).get("oot", {})
        return {"id": self.id, "stage": self.stage, "family": self.family, "created_by": self.created_by,
                "created_at": self.created_at.isoformat(), "rows": self.rows,
                "time_window": [_iso(self.time_window_start), _iso(self.time_window_end)],
                "oot_auc": oot.get("auc"), "oot_ks": oot.get("ks"), "oot_brier": oot.get("brier")}

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("created_at", "training_started_at", "training_finished_at", "time_window_start",
                    "time_window_end"):
            out[key] = _iso(out[key])
        out.pop("model_metadata")
        out["features"] = len(self.model_metadata.get("features", {}).get("names", []))
        out["calibration"] = self.model_metadata.get("calibration", {}).get("method")
        out["family"] = self.family
        return out

    @property
    def family(self) -> str:
        """lightgbm, scorecard or blend (the model card's)."""
        return art.model_family(self.model_metadata)


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Transition:
    id: int
    model_id: str
    action: str
    from_stage: str | None
    to_stage: str
    requested_by: str
    approved_by: str | None
    reason: str
    request_id: int | None
    at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.isoformat()}


@dataclass(frozen=True)
class PromotionRequest:
    id: int
    model_id: str
    to_stage: str
    requested_by: str
    reason: str
    requested_at: dt.datetime
    status: str
    decided_by: str | None
    decision_reason: str | None
    decided_at: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "requested_at": self.requested_at.isoformat(), "decided_at": _iso(self.decided_at)}


def _transition(row: sa.Row) -> Transition:
    r = row._mapping
    return Transition(r["id"], r["model_id"], r["action"], r["from_stage"], r["to_stage"], r["requested_by"],
                      r["approved_by"], r["reason"], r["request_id"], _utc(r["at"]))


def _request(row: sa.Row) -> PromotionRequest:
    r = row._mapping
    return PromotionRequest(r["id"], r["model_id"], r["to_stage"], r["requested_by"], r["reason"],
                            _utc(r["requested_at"]), r["status"], r["decided_by"], r["decision_reason"],
                            _utc(r["decided_at"]))


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def _ts(text: str) -> dt.datetime:
    return _utc(dt.datetime.fromisoformat(text))  # type: ignore[return-value]


class Registry:
    def __init__(self, engine: sa.Engine, models_dir: str | Path | None = None,
                 audit: AuditHook = chained_audit_log) -> None:
        if models_dir is None:
            from features.settings import get_settings

            models_dir = get_settings().data_dir / "models"
        self.engine = engine
        self.models_dir = Path(models_dir)
        self._audit = audit

    def _log(self, conn: sa.Connection, actor: str, action: str, model_id: str, **detail: Any) -> None:
        self._audit(conn, actor, f"model.{action}", f"model:{model_id}", detail)

    # ------------------------------------------------------------------ reading

    def list(self, stage: str | None = None) -> list[ModelRecord]:
        query = sa.select(models).order_by(models.c.created_at, models.c.id)
        if stage is not None:
            query = query.where(models.c.stage == stage)
        with self.engine.connect() as conn:
            return [ModelRecord.from_row(r) for r in conn.execute(query)]

    def resolve_id(self, model_id: str) -> str:
        """A full id from a full id or a unique prefix of at least 6 characters."""
        model_id = (model_id or "").strip().lower()
        with self.engine.connect() as conn:
            if conn.execute(sa.select(models.c.id).where(models.c.id == model_id)).first():
                return model_id
            if len(model_id) >= MIN_PREFIX:
                hits = conn.execute(sa.select(models.c.id).where(models.c.id.startswith(model_id, autoescape=True))
                                    ).scalars().all()
                if len(hits) == 1:
                    return hits[0]
                if len(hits) > 1:
                    raise UnknownModelError(f"model id prefix {model_id!r} is ambiguous: {', '.join(hits)}")
        raise UnknownModelError(f"unknown model id {model_id!r}: `indexloan models list` shows the registered ones")

    def get(self, model_id: str) -> ModelRecord:
        full = self.resolve_id(model_id)
        with self.engine.connect() as conn:
            return ModelRecord.from_row(conn.execute(sa.select(models).where(models.c.id == full)).one())

    def champion(self) -> ModelRecord | None:
        champions = self.list("champion")
        return champions[0] if champions else None

    def transitions(self, model_id: str | None = None) -> list[Transition]:
        query = sa.select(transitions).order_by(transitions.c.id)
        if model_id is not None:
            query = query.where(transitions.c.model_id == self.resolve_id(model_id))
        with self.engine.connect() as conn:
            return [_transition(r) for r in conn.execute(query)]

    def requests(self, model_id: str | None = None, status: str | None = None) -> list[PromotionRequest]:
        query = sa.select(promotion_requests).order_by(promotion_requests.c.id)
        if model_id is not None:
            query = query.where(promotion_requests.c.model_id == self.resolve_id(model_id))
        if status is not None:
            query = query.where(promotion_requests.c.status == status)
        with self.engine.connect() as conn:
            return [_request(r) for r in conn.execute(query)]

    def artifact_dir(self, record: ModelRecord) -> Path:
        recorded = Path(record.artifact_dir)
        return recorded if recorded.is_dir() else self.models_dir / record.id

    def verify(self, model_id: str) -> ModelRecord:
        """Check every artifact of a registered model against the sha256 recorded at registration."""
        record = self.get(model_id)
        art.verify(self.artifact_dir(record), record.digests)
        return record

    def load(self, model_id: str | None = None):  # type: ignore[no-untyped-def]  # -> RiskModel
        """The serving model (the champion when no id is given), loaded only after its sha256 checks."""
        from training.serving import RiskModel

        if model_id is None:
            record = self.champion()
            if record is None:
                raise RegistryError("there is no champion model: promote one first")
        else:
            record = self.get(model_id)
        return RiskModel.from_dir(self.artifact_dir(record), expected=record.digests, model_version=record.id)

    # ------------------------------------------------------------------ registering

    def register(self, directory: str | Path, created_by: str, reason: str = "registered after training"
                 ) -> ModelRecord:
        """Copy a trained model directory into the registry as a candidate (nothing stored on any error)."""
        from training.serving import RiskModel

        created_by = _who(created_by, "the registering person")
        source = Path(directory)
        meta, digests = art.verify_directory(source)
        RiskModel.from_dir(source)  # parses the booster and calibrator: a broken file fails here
        model_id = art.model_id_from_digests(digests)
        with self.engine.connect() as conn:
            existing = conn.execute(sa.select(models.c.stage).where(models.c.id == model_id)).scalar()
        if existing is not None:
            raise RegistryError(f"this model is already registered as {model_id} (stage {existing})")
        target = self.models_dir / model_id
        staging = self.models_dir / f".{model_id}.{uuid.uuid4().hex[:8]}.tmp"
        staging.mkdir(parents=True)
        created_target = False
        try:
            for name in art.ARTIFACTS:
                shutil.copy2(source / name, staging / name)
            art.verify(staging, digests)
            if target.exists():  # left by an earlier failed registration: replace only if not intact
                try:
                    art.verify(target, digests)
                    shutil.rmtree(staging)
                except ArtifactIntegrityError:
                    shutil.rmtree(target)
                    staging.rename(target)
                    created_target = True
            else:
                staging.rename(target)
                created_target = True
            record = self._insert(model_id, meta, digests, target, created_by, reason)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if created_target:
                shutil.rmtree(target, ignore_errors=True)
            raise
        return record

    def _insert(self, model_id: str, meta: dict[str, Any], digests: dict[str, str], target: Path,
                created_by: str, reason: str) -> ModelRecord:
        training = meta["training"]
        window = training.get("time_window") or [None, None]
        now = _now()
        values = {
            "id": model_id, "stage": "candidate", "created_by": created_by, "created_at": now,
            "operator": meta["operator"], "training_started_at": _ts(meta["started_at"]),
            "training_finished_at": _ts(meta["finished_at"]), "data_source": training["source"],
            "data_checksum": training["data_checksum"], "time_window_start": _date(window[0]),
            "time_window_end": _date(window[1]), "rows": int(training["rows"]),
            "code_version": str(meta["code_version"])[:128], "params": meta["params"], "metrics": meta["metrics"],
            "model_metadata": meta, "artifact_dir": str(target.resolve()),
            "model_sha256": digests[art.MODEL_FILE], "calibrator_sha256": digests[art.CALIBRATOR_FILE],
            "report_sha256": digests[art.REPORT_FILE], "metadata_sha256": digests[art.METADATA_FILE],
        }
        with self.engine.begin() as conn:
            conn.execute(models.insert().values(**values))
            conn.execute(transitions.insert().values(
                model_id=model_id, action="registered", from_stage=None, to_stage="candidate",
                requested_by=created_by, approved_by=None, reason=_why(reason), request_id=None, at=now))
            self._log(conn, created_by, "register", model_id, stage="candidate", reason=reason,
                      data_checksum=values["data_checksum"], digests=digests)
        return self.get(model_id)

    # ------------------------------------------------------------------ stage changes

    def _move(self, conn: sa.Connection, model_id: str, from_stage: str, to_stage: str, action: str,
              requested_by: str, reason: str, approved_by: str | None = None, request_id: int | None = None,
              at: dt.datetime | None = None) -> None:
        # Conditional update: a concurrent change of the same model makes this fail, not double-apply.
        done = conn.execute(models.update().where(models.c.id == model_id, models.c.stage == from_stage)
                            .values(stage=to_stage))
        if done.rowcount != 1:
            raise RegistryError(f"model {model_id} is no longer {from_stage}: it was changed concurrently")
        conn.execute(transitions.insert().values(
            model_id=model_id, action=action, from_stage=from_stage, to_stage=to_stage, requested_by=requested_by,
            approved_by=approved_by, reason=reason, request_id=request_id, at=at or _now()))

    def request_promotion(self, model_id: str, to_stage: str, requested_by: str, reason: str
                          ) -> Transition | PromotionRequest:
        """To challenger: done at once. To champion: a pending request that another person must approve."""
        requested_by = _who(requested_by, "the requester")
        reason = _why(reason)
        if to_stage not in ("challenger", "champion"):
            raise RegistryError(f"a promotion goes to challenger or champion, not {to_stage!r}")
        record = self.get(model_id)
        if record.stage == "retired":
            raise RegistryError(f"model {record.id} is retired; a retired model comes back only by rollback")
        if record.stage == to_stage:
            raise RegistryError(f"model {record.id} is already {to_stage}")
        if to_stage == "challenger":
            if record.stage != "candidate":
                raise RegistryError(f"only a candidate becomes challenger; model {record.id} is {record.stage}")
            with self.engine.begin() as conn:
                self._move(conn, record.id, "candidate", "challenger", "promoted", requested_by, reason)
                self._log(conn, requested_by, "promote", record.id, from_stage="candidate", to_stage="challenger",
                          reason=reason)
            return self.transitions(record.id)[-1]
        if self.requests(record.id, "pending"):
            raise RegistryError(f"model {record.id} already has a pending promotion request")
        with self.engine.begin() as conn:
            request_id = conn.execute(promotion_requests.insert().values(
                model_id=record.id, to_stage="champion", requested_by=requested_by, reason=reason,
                requested_at=_now(), status="pending")).inserted_primary_key[0]
            self._log(conn, requested_by, "promotion_request", record.id, from_stage=record.stage,
                      to_stage="champion", request_id=request_id, reason=reason)
        return self.requests(record.id, "pending")[-1]

    def _pending(self, model_id: str) -> PromotionRequest:
        pending = self.requests(model_id, "pending")
        if not pending:
            raise RegistryError(f"model {model_id} has no pending promotion request: "
                                "`indexloan models request-promotion` first")
        return pending[-1]

    def approve(self, model_id: str, approved_by: str, reason: str | None = None) -> Transition:
        """Maker-checker: the approver must not be the requester. The old champion is retired (replaced)."""
        approved_by = _who(approved_by, "the approver")
        record = self.get(model_id)
        request = self._pending(record.id)
        if approved_by.casefold() == request.requested_by.casefold():
            raise RegistryError(f"maker-checker: {approved_by} requested this promotion and cannot also approve it; "
                                "a different person must approve")
        art.verify(self.artifact_dir(record), record.digests)  # never promote a tampered model
        now = _now()
        why = (reason or "").strip() or request.reason
        with self.engine.begin() as conn:
            old = conn.execute(sa.select(models.c.id).where(models.c.stage == "champion")).scalars().all()
            for old_id in old:
                self._move(conn, old_id, "champion", "retired", "replaced", request.requested_by,
                           f"replaced by {record.id}: {why}", approved_by, request.id, now)
            self._move(conn, record.id, record.stage, "champion", "promoted", request.requested_by, why,
                       approved_by, request.id, now)
            done = conn.execute(promotion_requests.update()
                                .where(promotion_requests.c.id == request.id, promotion_requests.c.status == "pending")
                                .values(status="approved", decided_by=approved_by, decision_reason=why,
                                        decided_at=now))
            if done.rowcount != 1:
                raise RegistryError(f"promotion request {request.id} was decided concurrently")
            self._log(conn, approved_by, "approve", record.id, from_stage=record.stage, to_stage="champion",
                      request_id=request.id, requested_by=request.requested_by, replaced=old, reason=why)
        return self.transitions(record.id)[-1]

    def reject(self, model_id: str, rejected_by: str, reason: str) -> PromotionRequest:
        rejected_by = _who(rejected_by, "the person rejecting")
        reason = _why(reason)
        record = self.get(model_id)
        request = self._pending(record.id)
        with self.engine.begin() as conn:
            done = conn.execute(promotion_requests.update()
                                .where(promotion_requests.c.id == request.id, promotion_requests.c.status == "pending")
                                .values(status="rejected", decided_by=rejected_by, decision_reason=reason,
                                        decided_at=_now()))
            if done.rowcount != 1:
                raise RegistryError(f"promotion request {request.id} was decided concurrently")
            self._log(conn, rejected_by, "reject", record.id, request_id=request.id,
                      requested_by=request.requested_by, reason=reason)
        return self.requests(record.id)[-1]

    def rollback(self, by: str, reason: str) -> Transition:
        """Put the previous champion back and retire the current one, in one transaction."""
        by = _who(by, "the person rolling back")
        reason = _why(reason)
        current = self.champion()
        if current is None:
            raise RegistryError("there is no champion to roll back")
        history = self.transitions()
        last_action = {t.model_id: t.action for t in history}
        previous = None
        for t in reversed(history):
            # the latest earlier champion that was replaced (not one rolled back or retired on purpose)
            if t.to_stage == "champion" and t.model_id != current.id and last_action[t.model_id] == "replaced":
                previous = t.model_id
                break
        if previous is None:
            raise RegistryError(f"no previous champion to roll back to (current champion {current.id})")
        target = self.get(previous)
        art.verify(self.artifact_dir(target), target.digests)
        now = _now()
        with self.engine.begin() as conn:
            self._move(conn, current.id, "champion", "retired", "rolled_back", by, reason, at=now)
            self._move(conn, previous, "retired", "champion", "restored", by, reason, at=now)
            self._log(conn, by, "rollback", previous, retired=current.id, restored=previous, reason=reason)
        return self.transitions(previous)[-1]

    def retire(self, model_id: str, by: str, reason: str) -> Transition:
        by = _who(by, "the person retiring the model")
        reason = _why(reason)
        record = self.get(model_id)
        if record.stage == "champion":
            raise RegistryError(f"model {record.id} is the champion: roll back or promote another model first")
        if record.stage == "retired":
            raise RegistryError(f"model {record.id} is already retired")
        now = _now()
        with self.engine.begin() as conn:
            conn.execute(promotion_requests.update().where(promotion_requests.c.model_id == record.id,
                                                           promotion_requests.c.status == "pending")
                         .values(status="superseded", decided_by=by, decision_reason="model retired", decided_at=now))
            self._move(conn, record.id, record.stage, "retired", "retired", by, reason, at=now)
            self._log(conn, by, "retire", record.id, from_stage=record.stage, to_stage="retired", reason=reason)
        return self.transitions(record.id)[-1]

