"""Request dependencies: the database engine and the caller's API key and role."""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.http.errors import ProblemError
from api.keys import Principal, Role, lookup
from features import uscc

KEY_CACHE_SECONDS = 30.0

# What the OpenAPI document promises about a credit code (the check character is checked by uscc.problem,
# which also gives the clearer message, so the handlers validate and this only documents).
_CHAR = "[" + uscc.ALPHABET.replace("ABCDEFGH", "A-H").replace("JKLMN", "J-N") + "]"
CREDIT_CODE_SCHEMA = {"type": "string", "minLength": uscc.LENGTH, "maxLength": uscc.LENGTH,
                      "pattern": f"^{_CHAR}{{2}}[0-9]{{6}}{_CHAR}{{10}}$"}

bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer ilk_...`")


def get_engine(request: Request) -> sa.Engine:
    return request.app.state.engine


def get_principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise ProblemError(401, "an API key is required: send `Authorization: Bearer <key>`",
                           headers={"WWW-Authenticate": "Bearer"})
    # Keys are looked up at most once per KEY_CACHE_SECONDS per process: the quote path stays fast
    # and a revoked key stops working within that time.
    cache: dict[str, tuple[Principal, float]] = request.app.state.key_cache
    now = time.monotonic()
    cached = cache.get(credentials.credentials)
    if cached is not None and cached[1] > now:
        return cached[0]
    with get_engine(request).connect() as conn:
        principal = lookup(conn, credentials.credentials)
    if principal is None:
        cache.pop(credentials.credentials, None)
        raise ProblemError(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    cache[credentials.credentials] = (principal, now + KEY_CACHE_SECONDS)
    return principal


def require(*roles: Role) -> Callable[[Principal], Principal]:
    """Dependency allowing only the given roles."""
    allowed = frozenset(roles)

    def check(principal: Principal = Depends(get_principal)) -> Principal:
        if principal.role not in allowed:
            raise ProblemError(403, f"role {principal.role.value} may not use this endpoint; allowed: "
                               + ", ".join(sorted(r.value for r in allowed)))
        return principal

    return check


ALL_ROLES = tuple(Role)
RISK_ROLES = (Role.risk_analyst, Role.risk_approver, Role.admin)
