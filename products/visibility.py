"""Who may read which value: the one rule behind every output ("usable but not visible", SPEC 5).

A field's visibility is declared once, in the source catalogue (`features.sources`), and derived indicators
inherit the strictest visibility of their inputs (`products.fields.field_visibility`). An audience is who
reads an output:

- `bank`: the bank's own staff (loan officers, the risk team, administrators). They read `result` and
  `visible` values;
  `score_only` values (the tax bureau's raw items, filed statement figures, meter readings and everything
  computed from them) are used by the engine and the model and never shown, not even to the risk team:
  the seed says only the score result leaves the tax bureau.
- `platform`: the financial service platform. It reads no raw government value at all, only results
  (scores, grades, tiers, offers; among source fields only the `result` ones, an evaluation's published
  outcome such as the "two healthy" points, which the two_healthy index equals) and texts worded without
  values.
- `log`: log lines, read by operators: like the platform, no raw value.

The filter that applies the rule to responses, pages, files and logs is `api.visibility`; the texts
(`scoring.risk_texts`, hints in `api.visibility`) ask `shows` which wording to use.
"""

from __future__ import annotations

from enum import StrEnum

from features.sources import KEY_FIELDS
from products.fields import field_visibility

KEYS = frozenset(f.name for f in KEY_FIELDS)  # identifiers, not values: the caller sends them


class Audience(StrEnum):
    bank = "bank"
    platform = "platform"
    log = "log"


def visibility_of(field: str) -> str:
    """The visibility of a field or model input; an unknown name counts as `score_only` (fail closed)."""
    return field_visibility().get(field, "score_only")


def shows(audience: Audience, field: str) -> bool:
    """Whether `audience` may read the value of `field` (a `<source>.<field>`, derived or model input)."""
    if field in KEYS:
        return True
    level = visibility_of(field)
    if audience is Audience.bank:
        return level in ("result", "visible")
    if audience is Audience.platform:
        return level == "result"  # published outcomes only: no raw government value
    return False  # logs: no value at all


def withheld(audience: Audience) -> frozenset[str]:
    """Every catalogued field `audience` may not read (for the output scans and the log filter)."""
    return frozenset(name for name in field_visibility() if not shows(audience, name))
