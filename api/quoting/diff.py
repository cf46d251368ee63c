"""Structural difference between two JSON documents (for quote replay)."""

from __future__ import annotations

from typing import Any


def differences(before: Any, after: Any, path: str = "", limit: int = 200) -> list[dict[str, Any]]:
    """Leaf-level differences as [{path, before, after}], in document order (at most `limit`)."""
    out: list[dict[str, Any]] = []
    _walk(before, after, path, out, limit)
    return out


def _walk(a: Any, b: Any, path: str, out: list[dict[str, Any]], limit: int) -> None:
    if len(out) >= limit:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(dict.fromkeys([*a, *b])):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                out.append({"path": sub, "before": a.get(key), "after": b.get(key)})
            else:
                _walk(a[key], b[key], sub, out, limit)
        return
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(x, y, f"{path}[{i}]", out, limit)
        return
    if a != b or type(a) is not type(b):
        out.append({"path": path, "before": a, "after": b})
