"""An enterprise's data summary with provenance (loan officers only): the latest record of each source,
its fields as far as the reader may see them ("usable but not visible": `api.visibility`), the others named
under `withheld`."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Request

from api.http.deps import CREDIT_CODE_SCHEMA, require
from api.http.errors import ProblemError
from api.keys import Principal, Role
from api.visibility import audience_for, profile_fields
from features import uscc
from features.sources import GOVERNMENT_SOURCES, SOURCES
from features.store import audit
from features.store.tables import batches, source_table

router = APIRouter(prefix="/v1/enterprises", tags=["enterprises"])
LoanOfficers = require(Role.loan_officer)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


@router.get("/{credit_code}/profile", summary="Latest record per source with its provenance")
def profile(credit_code: Annotated[str, Path(description="unified social credit code (统一社会信用代码)",
                                             json_schema_extra=CREDIT_CODE_SCHEMA)],
            request: Request, principal: Principal = Depends(LoanOfficers)) -> dict[str, Any]:
    reason = uscc.problem(credit_code)
    if reason:
        raise ProblemError(422, f"invalid unified social credit code: {reason}",
                           errors=[{"field": "credit_code", "message": reason}])
    engine: sa.Engine = request.app.state.engine
    audience = audience_for(principal.role)
    sources: dict[str, Any] = {}
    with engine.connect() as conn:
        for name in GOVERNMENT_SOURCES:
            table = source_table(name)
            row = conn.execute(
                sa.select(table, batches.c.provider, batches.c.file_name, batches.c.file_sha256,
                          batches.c.finished_at.label("ingested_at"))
                .join(batches, batches.c.id == table.c.batch_id)
                .where(table.c.credit_code == credit_code, table.c.as_of <= dt.date.today())  # never a future row
                .order_by(table.c.as_of.desc()).limit(1)
            ).first()
            if row is None:
                sources[name] = {"present": False}
                continue
            data = row._mapping
            fields, withheld = profile_fields(name, {f: _plain(data[f]) for f in SOURCES[name].field_names},
                                              SOURCES[name].field_names, audience)
            sources[name] = {
                "present": True,
                "as_of": _plain(data["as_of"]),
                "provenance": {"provider": data["provider"], "provider_zh": SOURCES[name].provider_zh,
                               "file": data["file_name"], "file_sha256": data["file_sha256"],
                               "ingested_at": _plain(data["ingested_at"]), "batch_id": data["batch_id"],
                               "consent_ref": data["consent_ref"]},
                "fields": fields,
                "withheld": withheld,  # used by the scores, never shown (their values stay at the provider)
            }
        if not any(s["present"] for s in sources.values()):
            raise ProblemError(404, f"enterprise {credit_code} is not in the store",
                               errors=[{"field": "credit_code", "message": "unknown enterprise"}])
    with engine.begin() as conn:
        audit.append(conn, principal.name, "enterprise.profile", f"enterprise:{credit_code}", {})
    return {"credit_code": credit_code, "sources": sources}
