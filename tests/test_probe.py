"""The linear probe reaches the optimum of scikit-learn's logistic regression on the same data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from bench.probe import C_WITHOUT_CV, cv_C, fit_probe, load_into, stratified_folds


def _problem(n=120, d=30, k=4, seed=0):
    """Overlapping Gaussian classes with features of very different scales (standardisation matters)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    y = np.arange(n) % k
    x = centres[y] + 1.5 * rng.normal(size=(n, d))
    return x * rng.uniform(0.01, 100, size=d) + rng.normal(size=d) * 10, y


def _sklearn_objective(x, y, coef, intercept, C):
    """C * sum CE + 1/2 ||W||^2, divided by C * n (the probe's scaling)."""
    logits = x @ coef.T + intercept
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean() + (coef**2).sum() / (2 * C * len(y))


@pytest.mark.parametrize("C", [1e-3, 0.1, 10.0])
def test_probe_matches_sklearn_on_standardised_features(C):
    x, y = _problem()
    x_test, y_test = _problem(seed=1)
    scaler = StandardScaler().fit(x)
    ref = LogisticRegression(C=C, max_iter=20_000, tol=1e-10).fit(scaler.transform(x), y)
    fit = fit_probe(torch.from_numpy(x), torch.from_numpy(y), 4, C)
    assert fit.converged
    ref_loss = _sklearn_objective(scaler.transform(x), y, ref.coef_, ref.intercept_, C)
    assert fit.loss == pytest.approx(ref_loss, abs=1e-3)
    assert fit.loss <= ref_loss + 1e-6  # never worse than scikit-learn's own solution
    ours = (torch.from_numpy(x_test).float() @ fit.weight.T + fit.bias).argmax(1).numpy()
    theirs = ref.predict(scaler.transform(x_test))
    assert abs((ours == y_test).mean() - (theirs == y_test).mean()) <= 1e-3
    assert (ours == theirs).mean() >= 0.99


def test_stronger_regularisation_shrinks_the_weights_and_a_head_carries_the_fit():
    x, y = _problem()
    weak, strong = (fit_probe(torch.from_numpy(x), torch.from_numpy(y), 4, C) for C in (10.0, 1e-3))
    assert strong.weight.norm() < weak.weight.norm()
    head = torch.nn.Linear(x.shape[1], 4)
    load_into(head, weak)
    feats = torch.from_numpy(x).float()
    assert torch.equal(head(feats).argmax(1), (feats @ weak.weight.T + weak.bias).argmax(1))


def test_cross_validation_picks_the_C_with_the_best_held_out_accuracy_and_the_most_regularised_on_ties():
    x, y = _problem(n=60, d=40)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    grid = (1e-4, 1e-2, 1.0, 100.0)
    folds = stratified_folds(y, 5)
    assert sorted(torch.cat(folds).tolist()) == list(range(60))  # every example held out exactly once
    assert all(torch.bincount(y[f], minlength=4).tolist() == [3] * 4 for f in folds)  # 15 per class over 5 folds
    correct = dict.fromkeys(grid, 0)
    for held in folds:
        kept = torch.ones(60, dtype=torch.bool)
        kept[held] = False
        for C in grid:
            fit = fit_probe(x[kept], y[kept], 4, C)
            correct[C] += int(((x[held].float() @ fit.weight.T + fit.bias).argmax(1) == y[held]).sum())
    C, accuracy = cv_C(x, y, 4, grid)
    assert correct[C] == max(correct.values()) and C == min(c for c in grid if correct[c] == correct[C])
    assert accuracy == correct[C] / 60
    assert len(set(correct.values())) > 1  # the grid's values differ on this problem: the choice means something


def test_cross_validation_uses_as_many_folds_as_the_smallest_class_allows():
    x, y = _problem(n=12, d=8, k=4)
    C, accuracy = cv_C(torch.from_numpy(x), torch.from_numpy(y), 4, (0.01, 1.0))  # 3 per class: 3 folds
    assert C in (0.01, 1.0) and 0 <= accuracy <= 1
    one_each = torch.arange(4)
    C, accuracy = cv_C(torch.randn(4, 8), one_each, 4)
    assert C == C_WITHOUT_CV and np.isnan(accuracy)
