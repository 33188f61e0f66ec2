"""The linear probe reaches the optimum of scikit-learn's logistic regression on the same data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from bench.probe import fit_probe, load_into, sweep_C


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


def test_sweep_picks_the_C_with_the_best_validation_accuracy_and_the_most_regularised_on_ties():
    x, y = _problem(n=60, d=40)
    x_val, y_val = _problem(n=200, d=40, seed=1)
    train, val = (torch.from_numpy(x), torch.from_numpy(y)), (torch.from_numpy(x_val).float(), torch.from_numpy(y_val))
    grid = (1e-4, 1e-2, 1.0, 100.0)
    accuracy = {}
    for C in grid:
        fit = fit_probe(*train, 4, C)
        accuracy[C] = float(((val[0] @ fit.weight.T + fit.bias).argmax(1) == val[1]).float().mean())
    C, fit = sweep_C(train, val, 4, grid)
    assert accuracy[C] == max(accuracy.values()) and C == min(c for c in grid if accuracy[c] == accuracy[C])
    assert torch.equal(fit.weight, fit_probe(*train, 4, C).weight)
    assert len(set(accuracy.values())) > 1  # the grid's values differ on this problem: the choice means something
