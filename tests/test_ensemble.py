"""Greedy ensemble selection (training.ensemble): never worse than its best member on the rows it is fitted on,
non-negative weights summing to 1, a declared number of steps, and a measure blind to a score's scale."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from training.ensemble import greedy_weights, platt_logloss


def _members(n: int = 4000, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Two members that each see half of the signal, one that sees all of it badly, and pure noise."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a + b - 1)))).astype(int)
    scores = np.array([a + 0.3 * rng.normal(size=n), b + 0.3 * rng.normal(size=n),
                       0.5 * (a + b) + 1.2 * rng.normal(size=n), rng.normal(size=n)])
    return scores, y


def test_platt_logloss_is_the_log_loss_of_the_fitted_logistic_map_whatever_the_scale() -> None:
    scores, y = _members()
    s = scores[0]
    fitted = LogisticRegression(C=1e10, max_iter=1000).fit(s[:, None], y)
    want = log_loss(y, fitted.predict_proba(s[:, None])[:, 1])
    assert abs(platt_logloss(s, y) - want) < 1e-7
    assert abs(platt_logloss(3.0 * s - 2.0, y) - want) < 1e-7  # the calibrator sets scale and shift
    assert abs(platt_logloss(-5.0 + 0.01 * s, y) - want) < 1e-7


def test_greedy_selection_is_never_worse_than_its_best_member_and_weighs_complementary_members() -> None:
    scores, y = _members()
    weights = greedy_weights(scores, y, steps=20)
    single = [platt_logloss(s, y) for s in scores]
    ensemble = platt_logloss(weights @ scores, y)
    assert (weights >= 0).all() and abs(weights.sum() - 1) < 1e-12
    assert ensemble < min(single) - 0.01  # the two halves of the signal together
    assert weights[0] > 0.2 and weights[1] > 0.2 and weights[3] == 0  # noise gets no weight


def test_weights_are_counts_over_at_most_the_declared_steps_and_start_from_the_best_member() -> None:
    scores, y = _members()
    one = greedy_weights(scores, y, steps=1)
    best = int(np.argmin([platt_logloss(s, y) for s in scores]))
    assert one[best] == 1 and one.sum() == 1
    for steps in (3, 7, 20):
        w = greedy_weights(scores, y, steps)
        taken = [t for t in range(1, steps + 1) if np.allclose(w * t, np.round(w * t), rtol=0, atol=1e-9)]
        assert taken, f"{steps} steps: weights {w} are not counts over at most {steps} steps"
        assert platt_logloss(w @ scores, y) <= platt_logloss(scores[best], y)


def test_a_single_member_or_identical_members_give_that_member() -> None:
    scores, y = _members()
    assert greedy_weights(scores[:1], y, 20).tolist() == [1.0]
    same = np.array([scores[2], scores[2]])
    assert greedy_weights(same, y, 20).tolist() == [1.0, 0.0]  # no step improves: stop at the first member
