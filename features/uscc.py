"""Unified social credit code (统一社会信用代码, GB 32100-2015): validation and generation.

Layout of the 18 characters:
  1      registration authority code (登记管理部门码)
  2      entity type code (机构类别码)
  3-8    administrative division code (登记管理机关行政区划码), digits
  9-17   organisation code body and its GB 11714 check character (主体标识码)
  18     check character over positions 1-17 (校验码), modulus 31

The alphabet has 31 characters: digits and upper-case letters without I, O, S, V, Z. Because 31 is
prime and every weight is non-zero modulo 31, any single-character substitution changes the check.
"""

from __future__ import annotations

import numpy as np

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CHAR_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
LENGTH = 18
FORBIDDEN = "IOSVZ"

# GB 11714 organisation-code check: weights over the 8 body characters, modulus 11.
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

# Wenzhou's county-level administrative division codes (行政区划代码), used by the synthetic region.
WENZHOU_DIVISIONS = {
    "330302": "lucheng",
    "330303": "longwan",
    "330304": "ouhai",
    "330305": "dongtou",
    "330324": "yongjia",
    "330326": "pingyang",
    "330327": "cangnan",
    "330328": "wencheng",
    "330329": "taishun",
    "330381": "ruian",
    "330382": "yueqing",
    "330383": "longgang",
}


class CreditCodeError(ValueError):
    """A unified social credit code that is not valid; the message says what is wrong."""


def check_character(first17: str) -> str:
    """The 18th character for the given first 17 characters (which must be in the alphabet)."""
    total = sum(CHAR_VALUE[ch] * w for ch, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def problem(code: object) -> str | None:
    """Why `code` is not a valid unified social credit code, or None when it is."""
    if not isinstance(code, str):
        return f"must be a string of {LENGTH} characters, got {type(code).__name__}"
    if len(code) != LENGTH:
        return f"must be {LENGTH} characters long, got {len(code)}"
    for pos, ch in enumerate(code, start=1):
        if ch not in CHAR_VALUE:
            if ch.upper() in CHAR_VALUE:
                return f"character {pos} '{ch}' must be upper case"
            if ch.upper() in FORBIDDEN:
                return f"character {pos} '{ch}' is not allowed (the letters I, O, S, V, Z are never used)"
            return f"character {pos} '{ch}' is not a digit or an allowed upper-case letter"
    if not code[2:8].isdigit():
        return f"characters 3-8 (administrative division) must be digits, got '{code[2:8]}'"
    expected = check_character(code[:17])
    if code[17] != expected:
        return f"check character (18th) is '{code[17]}' but should be '{expected}'"
    return None


def is_valid(code: object) -> bool:
    return problem(code) is None


def validate(code: object) -> str:
    """Return the code unchanged, or raise CreditCodeError saying what is wrong."""
    reason = problem(code)
    if reason is not None:
        raise CreditCodeError(f"invalid unified social credit code {code!r}: {reason}")
    assert isinstance(code, str)
    return code


# ---------------------------------------------------------------------------------------------------
# Vectorised generation for the synthetic region (millions of codes in well under a second each).

_ALPHABET_ARRAY = np.array(list(ALPHABET))
_ORG_MODULUS = 31**8
# Multiplier coprime with 31**8: scatters consecutive firm numbers over the organisation-code space
# so that codes look random yet stay unique (the map is a bijection). Small enough that
# multiplier * 31**8 fits in int64.
_ORG_MULTIPLIER = 9_999_991


def _org_check(body_values: np.ndarray) -> np.ndarray:
    """GB 11714 check character values (as indices into ALPHABET) for organisation-code bodies."""
    # GB 11714 values: digits 0-9, letters A=10 ... Z=35 by their position in the Latin alphabet.
    latin_value = np.array([int(ch, 36) for ch in ALPHABET])
    total = (latin_value[body_values] * np.array(ORG_WEIGHTS)).sum(axis=1)
    check = 11 - total % 11  # 1..11; 10 is written 'X', 11 is written '0'
    return np.where(check == 11, 0, np.where(check == 10, CHAR_VALUE["X"], check))


def generate(
    firm_numbers: np.ndarray,
    division_codes: np.ndarray,
    entity_type: str = "1",
    authority: str = "9",
) -> np.ndarray:
    """Valid, unique credit codes for distinct non-negative firm numbers (vectorised).

    `division_codes` holds a six-digit division code string per firm.
    """
    numbers = np.asarray(firm_numbers, dtype=np.int64)
    if numbers.size and (numbers.min() < 0 or numbers.max() >= _ORG_MODULUS):
        raise ValueError("firm numbers must be in [0, 31**8)")
    n = numbers.size
    values = np.empty((n, 17), dtype=np.int64)
    values[:, 0] = CHAR_VALUE[authority]
    values[:, 1] = CHAR_VALUE[entity_type]
    divisions = np.asarray(division_codes).astype("U6")
    # code points minus ord("0"): far faster than parsing each digit as a string
    div_digits = divisions.view(np.uint32).reshape(n, 6).astype(np.int64) - ord("0")
    values[:, 2:8] = div_digits
    scrambled = numbers * _ORG_MULTIPLIER % _ORG_MODULUS
    for pos in range(7, -1, -1):
        values[:, 8 + pos] = scrambled % 31
        scrambled //= 31
    values[:, 16] = _org_check(values[:, 8:16])
    total = (values * np.array(WEIGHTS)).sum(axis=1)
    check = (31 - total % 31) % 31
    chars = _ALPHABET_ARRAY[np.concatenate([values, check[:, None]], axis=1)]
    return chars.view(f"U{LENGTH}").ravel()


# Lookup from Unicode code point (ASCII range) to alphabet value; -1 for characters not allowed.
_VALUE_BY_CODEPOINT = np.full(128, -1, dtype=np.int64)
for _ch, _v in CHAR_VALUE.items():
    _VALUE_BY_CODEPOINT[ord(_ch)] = _v


def valid_mask(codes: np.ndarray | list[str]) -> np.ndarray:
    """Vectorised `is_valid` for many codes (missing values are invalid)."""
    # One character wider than a code, so that longer strings are not silently truncated.
    fixed = np.asarray(codes, dtype=object).astype(f"U{LENGTH + 1}")
    result = np.char.str_len(fixed) == LENGTH
    if not result.any():
        return result
    points = fixed[result].astype(f"U{LENGTH}").view(np.uint32).reshape(-1, LENGTH).astype(np.int64)
    digits = _VALUE_BY_CODEPOINT[np.minimum(points, 127)]
    chars_ok = (points < 128).all(axis=1) & (digits >= 0).all(axis=1)
    division_ok = (digits[:, 2:8] <= 9).all(axis=1)
    total = (digits[:, :17] * np.array(WEIGHTS)).sum(axis=1)
    check_ok = digits[:, 17] == (31 - total % 31) % 31
    result[result] = chars_ok & division_ok & check_ok
    return result
