import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import uscc

# Worked by hand: values 9,1,3,3,0,3,0,2 then zeros, weights 1,3,9,27,19,26,16,17:
# 9+3+27+81+78+34 = 232; 232 mod 31 = 15; 31 - 15 = 16 -> 'G'.
KNOWN_VALID = ["91330302000000000G"]


def _codes(n: int = 500) -> np.ndarray:
    rng = np.random.default_rng(3)
    divisions = np.array(list(uscc.WENZHOU_DIVISIONS))[rng.integers(0, 12, n)]
    return uscc.generate(rng.choice(31**8, size=n, replace=False), divisions)


def test_hand_checked_code_is_valid() -> None:
    for code in KNOWN_VALID:
        assert uscc.problem(code) is None


def test_generated_codes_are_valid_and_unique() -> None:
    codes = _codes(5000)
    assert len(set(codes)) == len(codes)
    assert all(uscc.is_valid(c) for c in codes)
    assert all(len(c) == 18 for c in codes)


def test_check_character_matches_weights() -> None:
    code = _codes(1)[0]
    total = sum(uscc.CHAR_VALUE[c] * w for c, w in zip(code[:17], uscc.WEIGHTS, strict=True))
    assert (total + uscc.CHAR_VALUE[code[17]]) % 31 == 0


@pytest.mark.parametrize("code", list(_codes(20)))
def test_every_single_character_corruption_is_rejected(code: str) -> None:
    for pos in range(18):
        for ch in uscc.ALPHABET:
            if ch == code[pos]:
                continue
            corrupted = code[:pos] + ch + code[pos + 1 :]
            assert not uscc.is_valid(corrupted), (code, pos, ch)


@given(st.text(max_size=25))
@settings(max_examples=300)
def test_random_text_never_crashes_and_explains(text: str) -> None:
    reason = uscc.problem(text)
    assert reason is None or isinstance(reason, str) and reason


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("9133030200000000", "18 characters"),
        ("91330302000000000I", "not allowed"),
        ("91330302000000000g", "upper case"),
        ("9133030200000000-G", "not a digit"),
        ("91AB0302000000000G", "administrative division"),
        ("91330302000000000H", "check character"),
        (12345, "string"),
    ],
)
def test_messages_say_what_is_wrong(code: object, fragment: str) -> None:
    reason = uscc.problem(code)
    assert reason is not None and fragment in reason
    with pytest.raises(uscc.CreditCodeError, match=fragment):
        uscc.validate(code)


def test_forbidden_letters_not_in_alphabet() -> None:
    assert not set(uscc.FORBIDDEN) & set(uscc.ALPHABET)
    assert len(uscc.ALPHABET) == 31


@given(st.lists(st.one_of(st.text(alphabet=uscc.ALPHABET + "iosvz-", min_size=17, max_size=19), st.none()),
                max_size=30))
@settings(max_examples=200)
def test_vectorised_validation_agrees_with_the_scalar_one(texts: list[str | None]) -> None:
    codes = texts + list(_codes(5))
    assert list(uscc.valid_mask(codes)) == [uscc.is_valid(c) for c in codes]
