"""training.forest: the compiled walk gives LightGBM's raw scores bit for bit, on every kind of split and value."""

from __future__ import annotations

import dataclasses

import lightgbm as lgb
import numpy as np
import pytest

from training.families import average_boosters
from training.forest import BLOCK_ROWS, MAX_TABLE_SPLITS, compile_forest, probe_rows


def _training_rows(seed: int, rows: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 6))
    X[:, 1] = np.where(rng.random(rows) < 0.3, 0.0, X[:, 1])  # zeros: "zero is missing" splits
    X[rng.random(rows) < 0.15, 2] = np.nan  # NaN: "NaN is missing" splits
    X[:, 3] = np.where(rng.random(rows) < 0.1, np.nan, rng.integers(0, 40, rows))  # categorical, many levels
    X[:, 4] = np.abs(X[:, 4]) * 1e-36 * (rng.random(rows) < 0.5)  # values around LightGBM's zero threshold
    logit = X[:, 0] - 0.8 * np.nan_to_num(X[:, 2]) + 0.9 * np.isin(X[:, 3], [3, 7, 11, 30]) + X[:, 1]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def _scoring_rows(seed: int, rows: int) -> np.ndarray:
    """Values a model must cope with: NaN, +-inf, -0.0, tiny values either side of the zero threshold,
    negative, fractional and huge categories, and every split's own threshold."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 6)) * rng.choice([1e-40, 1e-36, 1.0, 3.0, 1e12], size=(rows, 6))
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-35, -1e-35, float(np.float32(1e-35)), 5e-324])
    mask = rng.random(X.shape) < 0.25
    X[mask] = rng.choice(specials, size=int(mask.sum()))
    X[:, 3] = rng.choice([np.nan, -1.0, -0.5, 0.0, 0.7, 3.0, 7.0, 11.2, 30.0, 39.0, 64.0, 1e10, -1e10, 5.0], rows)
    return X


def _train(params: dict, rounds: int = 40, seed: int = 0) -> lgb.Booster:
    X, y = _training_rows(seed)
    base = {"objective": "binary", "verbose": -1, "seed": 1, "deterministic": True, "num_threads": 1,
            "min_data_per_group": 5, "cat_smooth": 1.0, "max_cat_to_onehot": 4}
    data = lgb.Dataset(X, y, categorical_feature=[3], params={"verbose": -1, **params.get("dataset", {})})
    return lgb.train({**base, **{k: v for k, v in params.items() if k != "dataset"}}, data, rounds)


SHAPES = {
    "depth 2, NaN missing": {"max_depth": 2, "num_leaves": 4},
    "31 leaves (walked, not tabled)": {"num_leaves": 31, "min_data_in_leaf": 5},
    "zero as missing": {"num_leaves": 8, "zero_as_missing": True},
    "no missing handling": {"num_leaves": 6, "use_missing": False},
    "one split per tree": {"num_leaves": 2},
}


@pytest.mark.parametrize("shape", SHAPES)
def test_raw_scores_are_lightgbms_bit_for_bit(shape: str) -> None:
    booster = _train(SHAPES[shape])
    forest = compile_forest(booster.model_to_string())
    assert forest is not None
    X = _scoring_rows(3, 3 * BLOCK_ROWS + 17)  # blocks that do not divide the rows
    expected = booster.predict(X, raw_score=True, num_threads=1)
    for matrix in (X, np.asfortranarray(X), X[::2], X[:, :].copy(order="F")[1::3]):
        want = booster.predict(matrix, raw_score=True, num_threads=1)
        for threads in (1, 2):
            got = forest.raw_score(matrix, threads)
            assert got.dtype == np.float64
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(forest.raw_score(X), expected)
    one = forest.raw_score(X[5:6])
    assert one.tobytes() == expected[5:6].tobytes()  # one row alone: the same bits as in a batch


def test_the_cases_are_really_covered() -> None:
    """The shapes above exercise what the walk distinguishes: categorical splits (with and without NaN in
    training), each missing type, tables and walked trees (a test of nothing would pass too)."""
    seen_missing, seen_categorical_missing, categorical, tabled, walked = set(), set(), False, False, False
    for params in SHAPES.values():
        forest = compile_forest(_train(params).model_to_string())
        assert forest is not None
        seen_missing |= set(forest.missing[~forest.categorical].tolist())
        seen_categorical_missing |= set(forest.missing[forest.categorical].tolist())
        categorical |= bool(forest.categorical.any())
        sizes = np.diff(forest.table_start)
        tabled |= bool((sizes > 0).any())
        walked |= bool((np.diff(forest.node_start) > MAX_TABLE_SPLITS).any())
    assert seen_missing == {0, 1, 2} and categorical and tabled and walked
    assert seen_categorical_missing == {0, 2}  # categorical splits with and without NaN seen in training


def test_float32_input_and_one_leaf_trees() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(int)
    X = rng.normal(size=(400, 3))
    learnt = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1}, lgb.Dataset(X, y), 4)
    # nothing to split on: LightGBM keeps one tree of a single leaf
    constant = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(np.ones((400, 3)), y), 3)
    booster = average_boosters([learnt, constant])
    forest = compile_forest(booster.model_to_string())
    assert forest is not None and (np.diff(forest.node_start) == 0).any()
    X32 = rng.normal(size=(50, 3)).astype(np.float32)
    np.testing.assert_array_equal(forest.raw_score(X32), booster.predict(X32, raw_score=True))


def test_models_the_walk_does_not_cover_are_left_to_lightgbm() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 3))
    y = (X[:, 0] > 0).astype(int)
    multiclass = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1},
                           lgb.Dataset(X, rng.integers(0, 3, 600)), 3)
    linear = lgb.train({"objective": "binary", "linear_tree": True, "verbose": -1}, lgb.Dataset(X, y), 3)
    forest_mode = lgb.train({"objective": "binary", "boosting": "rf", "bagging_fraction": 0.5, "bagging_freq": 1,
                             "verbose": -1}, lgb.Dataset(X, y), 3)
    for booster in (multiclass, linear, forest_mode):
        assert compile_forest(booster.model_to_string()) is None


def test_wrong_width_is_refused() -> None:
    forest = compile_forest(_train(SHAPES["depth 2, NaN missing"], rounds=3).model_to_string())
    assert forest is not None
    with pytest.raises(ValueError, match="6 columns"):
        forest.raw_score(np.zeros((2, 5)))


@pytest.mark.parametrize("shape", ["depth 2, NaN missing", "zero as missing", "no missing handling"])
def test_values_inside_lightgbms_zero_band_read_as_zero(shape: str) -> None:
    """LightGBM reads |x| <= 1e-35 as 0.0: with a threshold inside that band, -1e-36 and 1e-36 go where 0 goes
    (its training never puts a threshold there, so the model file is edited to have one)."""
    text = _train(SHAPES[shape], rounds=5).model_to_string()
    lines = [("threshold=" + " ".join("4e-36" for _ in line.split("=", 1)[1].split())
              if line.startswith("threshold=") else line) for line in text.split("\n")
             if not line.startswith("tree_sizes=")]  # the sizes no longer hold; LightGBM then reads tree by tree
    booster = lgb.Booster(model_str="\n".join(lines))
    forest = compile_forest(booster.model_to_string())
    assert forest is not None
    values = (-1e-36, 1e-36, 3e-36, -3e-36, 5e-36, 0.0, np.nan, -4e-36, 1.0, -1.0)
    X = np.tile(np.array([[v] * 6 for v in values]), (40, 1))
    want = booster.predict(X, raw_score=True)
    assert len(np.unique(want)) > 1  # the edited thresholds separate 1.0 from the rest
    np.testing.assert_array_equal(forest.raw_score(X), want)


def test_scorer_prepared_in_background_answers_concurrent_callers_alike() -> None:
    """A model loaded for serving compiles its forest on a thread; callers arriving meanwhile wait for it (or
    compile it themselves) and all get LightGBM's numbers; a model the walk does not cover uses `predict`."""
    from concurrent.futures import ThreadPoolExecutor

    from training.families import BoosterRawScore

    booster = _train(SHAPES["31 leaves (walked, not tabled)"], rounds=10)
    X = _scoring_rows(9, 700)
    want = booster.predict(X, raw_score=True)
    raw = BoosterRawScore(booster)
    raw.prepare_in_background()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: raw(X, 1), range(8)))
    for got in results:
        np.testing.assert_array_equal(got, want)
    assert raw._forest is not None and raw._forest is not False  # the walk, not LightGBM, answered

    rng = np.random.default_rng(2)
    Xl = rng.normal(size=(500, 3))
    linear = lgb.train({"objective": "binary", "linear_tree": True, "verbose": -1},
                       lgb.Dataset(Xl, (Xl[:, 0] > 0).astype(int)), 3)
    fallback = BoosterRawScore(linear)
    np.testing.assert_array_equal(fallback(Xl), linear.predict(Xl, raw_score=True))
    assert fallback._forest is None


def test_probe_rows_catch_a_walk_that_differs_from_lightgbm() -> None:
    """The serving scorer checks its forest against LightGBM on `probe_rows` once: those rows reach every
    branch, so a forest of a slightly different model (a threshold moved to its neighbouring double, a default
    direction flipped, a category moved to the other side) is caught, and the model's own forest passes."""
    booster = _train(SHAPES["31 leaves (walked, not tabled)"], rounds=10)
    forest = compile_forest(booster.model_to_string())
    assert forest is not None and forest.categorical.any()
    probe = probe_rows(forest)
    want = booster.predict(probe, raw_score=True)
    np.testing.assert_array_equal(forest.raw_score(probe), want)
    numeric = np.flatnonzero(~forest.categorical)
    moved = forest.threshold.copy()
    moved[numeric[0]] = np.nextafter(moved[numeric[0]], -np.inf)
    flipped = forest.default_left.copy()
    with_missing = numeric[forest.missing[numeric] == 2][0]
    flipped[with_missing] = not flipped[with_missing]
    words = forest.cat_words.copy()
    words[0] ^= np.uint32(1 << 3)  # category 3 of the first categorical split
    for altered in (dataclasses.replace(forest, threshold=moved), dataclasses.replace(forest, default_left=flipped),
                    dataclasses.replace(forest, cat_words=words)):
        assert not np.array_equal(altered.raw_score(probe), want)


def test_a_scorer_pickles_without_its_forest_and_compiles_again() -> None:
    """A batch context goes to Dask workers pickled: the booster travels, the lock and compiled arrays do not."""
    import pickle

    from training.families import BoosterRawScore

    booster = _train(SHAPES["depth 2, NaN missing"], rounds=5)
    X = _scoring_rows(4, 300)
    raw = BoosterRawScore(booster)
    raw.prepare()
    copy = pickle.loads(pickle.dumps(raw))
    assert copy._forest is False
    np.testing.assert_array_equal(copy(X), booster.predict(X, raw_score=True))
    assert copy._forest is not None and copy._forest is not False


def test_a_forest_that_disagrees_with_lightgbm_is_not_used(monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """Fault injection: should the walk ever differ from the LightGBM installed (a new release changing a rule),
    the load-time check drops it, logs a warning without any data, and every score is LightGBM's own."""
    import training.families as families

    booster = _train(SHAPES["depth 2, NaN missing"], rounds=8)
    forest = compile_forest(booster.model_to_string())
    assert forest is not None
    moved = forest.threshold.copy()
    moved[np.flatnonzero(~forest.categorical)[0]] = np.nextafter(moved[np.flatnonzero(~forest.categorical)[0]],
                                                                 -np.inf)
    monkeypatch.setattr(families, "compile_forest", lambda text: dataclasses.replace(forest, threshold=moved))
    raw = families.BoosterRawScore(booster)
    X = _scoring_rows(5, 400)
    with caplog.at_level("WARNING", logger="training.families"):
        np.testing.assert_array_equal(raw(X), booster.predict(X, raw_score=True))
    assert raw._forest is None
    assert [r.getMessage() for r in caplog.records] == ["compiled forest disagrees with LightGBM; using its predict"]
