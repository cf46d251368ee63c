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

KEY_CACHE_SECONDS = 30.0  # the longest a revocation made on another machine takes to be seen here
MAX_CACHED_KEYS = 10_000

# What the OpenAPI document promises about a credit code (the check character is checked by uscc.problem,
# which also gives the clearer message, so the handlers validate and this only documents).
_CHAR = "[" + uscc.ALPHABET.replace("ABCDEFGH", "A-H").replace("JKLMN", "J-N") + "]"
CREDIT_CODE_SCHEMA = {"type": "string", "minLength": uscc.LENGTH, "maxLength": uscc.LENGTH,
                      "pattern": f"^{_CHAR}{{2}}[0-9]{{6}}{_CHAR}{{10}}$"}

bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer ilk_...`")


def get_engine(request: Request) -> sa.Engine:
    return request.app.state.engine


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, headers={"WWW-Authenticate": "Bearer"})


def cached_principal(request: Request, key: str) -> Principal | None:
    """The key's principal from this process's cache, if still valid: looked up less than KEY_CACHE_SECONDS
    ago, not expired, and no key revoked since on this machine (the shared key epoch, one pread)."""
    cached = request.app.state.key_cache.get(key)
    if cached is None:
        return None
    principal, valid_until, epoch = cached
    if valid_until <= time.monotonic() or principal.expired():
        return None
    limits = getattr(request.app.state, "limits", None)
    if limits is not None and limits.key_epoch.read() != epoch:
        request.app.state.key_cache.clear()  # a key was revoked: look every key up again
        return None
    return principal


def get_principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise _unauthorized("an API key is required: send `Authorization: Bearer <key>`")
    key = credentials.credentials
    principal = cached_principal(request, key)
    if principal is not None:
        return principal
    # Keys are looked up at most once per KEY_CACHE_SECONDS per process (the quote path stays fast);
    # a revocation is seen at once by every worker on this machine (the key epoch), an expiry too.
    limits = getattr(request.app.state, "limits", None)
    address = request.client.host if request.client else "unknown"
    if limits is not None:
        wait = limits.auth_blocked(address)
        if wait:  # too many failed authentications from this address: no look-up, no database query
            raise ProblemError(429, "too many failed authentications from this address; retry later",
                               headers={"Retry-After": str(max(1, round(wait + 0.5)))})
    epoch = limits.key_epoch.read() if limits is not None else 0
    if len(key) > 256:
        principal = None  # no key is that long: not worth hashing
    else:
        with get_engine(request).connect() as conn:
            principal = lookup(conn, key)
    cache: dict[str, tuple[Principal, float, int]] = request.app.state.key_cache
    if principal is None:
        cache.pop(key, None)
        if limits is not None:
            limits.auth_failed(address)
        raise _unauthorized("unknown, revoked or expired API key")
    if len(cache) > MAX_CACHED_KEYS:
        cache.clear()
    cache[key] = (principal, time.monotonic() + KEY_CACHE_SECONDS, epoch)
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
