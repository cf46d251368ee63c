"""Ensemble selection (Caruana et al. 2004): greedy forward selection, with replacement, of candidates'
out-of-fold raw scores (log-odds), the ensemble's score being the mean of the selected scores.

The measure is the log-loss of the ensemble's score after a Platt fit on the same rows (`platt_logloss`): a
proper scoring rule, the loss every member was trained with, and blind to a score's scale and shift (the
final calibrator sets those), so it rewards members that add ranking or calibration information, not ones
that merely change the spread. Selection starts from the single member with the best measure and adds, one
step at a time and up to a declared number of steps, the member (an already selected one included) that
lowers the measure most; it stops early when no addition lowers it. So on the rows it is fitted on the
ensemble is never worse than its best single member, by construction. Weights are selection counts over
the number of steps taken: non-negative and summing to 1, so a weighted sum of models monotone in the same
direction is monotone in it too.

The Platt fit here is its own (Newton's method, unpenalised, to a change of the loss below 1e-13) rather than
`training.calibration`'s (scikit-learn's L-BFGS with C = 1e6, the served calibrator): the two agree to about 1e-7
in the log-loss, not to the last bit, and the greedy loop makes hundreds of fits, each about ten times cheaper here.
Merging them would change either the served calibrator's coefficients (every PD, the golden tables) or the
ensemble's measure.
"""

from __future__ import annotations

import numpy as np

NEWTON_STEPS = 50


def platt_logloss(score: np.ndarray, y: np.ndarray) -> float:
    """Mean log-loss of sigmoid(a x score + b) with (a, b) fitted on these rows (Newton's method from a = 1,
    b = 0: the scores are log-odds already), halving a step that would raise the loss."""
    s = np.asarray(score, np.float64)
    yy = np.asarray(y, np.float64)
    design = np.column_stack([s, np.ones_like(s)])
    coef = np.array([1.0, 0.0])
    loss = _logloss(design @ coef, yy)
    for _ in range(NEWTON_STEPS):
        z = design @ coef
        p = _sigmoid(z)
        grad = design.T @ (p - yy)
        hess = (design * (p * (1.0 - p))[:, None]).T @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        for _ in range(30):
            trial = _logloss(design @ (coef - step), yy)
            if trial <= loss:
                break
            step = step / 2.0
        else:
            break
        coef, improvement, loss = coef - step, loss - trial, trial
        if improvement < 1e-13:
            break
    return float(loss) / len(yy)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def _logloss(z: np.ndarray, y: np.ndarray) -> float:
    """Sum of -log p(y) for logits z, without overflow."""
    return float(np.sum(np.logaddexp(0.0, z) - y * z))


def greedy_weights(scores: np.ndarray, y: np.ndarray, steps: int) -> np.ndarray:
    """Weights of the members (rows of `scores`, members x rows) chosen by greedy forward selection with
    replacement in at most `steps` steps; ties go to the member listed first."""
    n = len(scores)
    counts = np.zeros(n, np.int64)
    losses = [platt_logloss(s, y) for s in scores]
    first = int(np.argmin(losses))
    counts[first] = 1
    total, best = scores[first].copy(), losses[first]
    for taken in range(1, steps):
        trials = [platt_logloss((total + scores[j]) / (taken + 1), y) for j in range(n)]
        j = int(np.argmin(trials))
        if not trials[j] < best:
            break
        counts[j] += 1
        total += scores[j]
        best = trials[j]
    return counts / counts.sum()
