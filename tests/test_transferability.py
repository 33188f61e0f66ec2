"""Transferability estimators on constructed data: informative beats random, agreement with transcriptions of the
published reference implementations, closed forms, and the input errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from bench.analysis import transferability as tr

# Reference implementations, transcribed as published (numba's @njit dropped, otherwise statement for statement).


# thuml/LogME, LogME.py (https://github.com/thuml/LogME/blob/main/LogME.py): truncated_svd and
# LogME._fit_fixed_point, which LogME.fit uses for classification. pad_sigma=True applies the fix of pull request
# #24 (https://github.com/thuml/LogME/pull/24) for issue #23: log det A over all D eigenvalues of F^T F, the D - k
# beyond the rank being zero. Returns the score and the per-class alphas (LogME.alphas).
def _reference_truncated_svd(x):
    u, s, vh = np.linalg.svd(x.transpose() @ x)
    s = np.sqrt(s)
    u_times_sigma = x @ vh.transpose()
    k = np.sum((s > 1e-10) * 1)
    s = s.reshape(-1, 1)
    s = s[:k]
    vh = vh[:k]
    u = u_times_sigma[:, :k] / s.reshape(1, -1)
    return u, s, vh


def _reference_logme_fit(f, y, pad_sigma=False):
    f = f.astype(np.float64)
    N, D = f.shape
    if N > D:
        u, s, vh = _reference_truncated_svd(f)
    else:
        u, s, vh = np.linalg.svd(f, full_matrices=False)
    s = s.reshape(-1, 1)
    sigma = s**2
    sigma_logdet = np.pad(sigma, ((0, D - len(sigma)), (0, 0))) if pad_sigma else sigma

    evidences, alphas = [], []
    num_dim = int(y.max() + 1)
    for i in range(num_dim):
        y_ = (y == i).astype(np.float64)
        y_ = y_.reshape(-1, 1)
        x = u.T @ y_
        x2 = x**2
        res_x2 = (y_**2).sum() - x2.sum()

        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (N - gamma) / (res2 + 1e-5)
            t_ = alpha / beta
            if abs(t_ - t) / t <= 1e-3:
                break
        evidence = (
            D / 2.0 * np.log(alpha)
            + N / 2.0 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * sigma_logdet))
            - beta / 2.0 * res2
            - alpha / 2.0 * m2
            - N / 2.0 * np.log(2 * np.pi)
        )
        evidence /= N
        evidences.append(evidence)
        alphas.append(alpha)
    return np.mean(evidences), np.array(alphas)


# thuml/LogME, LogME.py (https://github.com/thuml/LogME/blob/main/LogME.py): each_evidence and LogME._fit_icml, the
# ICML 2021 paper's algorithm (also TLlib's tllib/ranking/logme.py, there without the epsilon).
def _reference_logme_icml(f, y):
    fh = f
    f = f.transpose()
    D, N = f.shape
    v, s, vh = np.linalg.svd(f @ fh, full_matrices=True)
    evidences = []
    for i in range(int(y.max() + 1)):
        y_ = (y == i).astype(np.float64)
        epsilon = 1e-5
        alpha = 1.0
        beta = 1.0
        lam = alpha / beta
        tmp = vh @ (f @ np.ascontiguousarray(y_))
        for _ in range(11):
            gamma = (s / (s + lam)).sum()
            m = v @ (tmp * beta / (alpha + beta * s))
            alpha_de = (m * m).sum()
            alpha = gamma / (alpha_de + epsilon)
            beta_de = ((y_ - fh @ m) ** 2).sum()
            beta = (N - gamma) / (beta_de + epsilon)
            new_lam = alpha / beta
            if np.abs(new_lam - lam) / lam < 0.01:
                break
            lam = new_lam
        evidence = (
            D / 2.0 * np.log(alpha)
            + N / 2.0 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * s))
            - beta / 2.0 * (beta_de + epsilon)
            - alpha / 2.0 * (alpha_de + epsilon)
            - N / 2.0 * np.log(2 * np.pi)
        )
        evidences.append(evidence / N)
    return np.mean(evidences)


# TLlib, tllib/ranking/leep.py
# (https://github.com/thuml/Transfer-Learning-Library/blob/master/tllib/ranking/leep.py)
def _reference_leep(source_pred, target_label):
    N, C_s = source_pred.shape
    target_label = target_label.reshape(-1)
    C_t = int(np.max(target_label) + 1)
    normalized_prob = source_pred / float(N)
    joint = np.zeros((C_t, C_s), dtype=float)
    for i in range(C_t):
        this_class = normalized_prob[target_label == i]
        row = np.sum(this_class, axis=0)
        joint[i] = row
    p_target_given_source = (joint / joint.sum(axis=0, keepdims=True)).T
    empirical_prediction = source_pred @ p_target_given_source
    empirical_prob = np.array(
        [predict[label] for predict, label in zip(empirical_prediction, target_label, strict=True)]
    )
    return np.mean(np.log(empirical_prob))


# TLlib, tllib/ranking/nce.py
# (https://github.com/thuml/Transfer-Learning-Library/blob/master/tllib/ranking/nce.py)
def _reference_nce(source_labels, target_labels):
    C_t = int(np.max(target_labels) + 1)
    C_s = int(np.max(source_labels) + 1)
    N = len(source_labels)
    joint = np.zeros((C_t, C_s), dtype=float)
    for s, t in zip(source_labels, target_labels, strict=True):
        s = int(s)
        t = int(t)
        joint[t, s] += 1.0 / N
    p_z = joint.sum(axis=0, keepdims=True)
    p_target_given_source = (joint / p_z).T
    mask = p_z.reshape(-1) != 0
    p_target_given_source = p_target_given_source[mask] + 1e-20
    entropy_y_given_z = np.sum(-p_target_given_source * np.log(p_target_given_source), axis=1, keepdims=True)
    conditional_entropy = np.sum(entropy_y_given_z * p_z.reshape((-1, 1))[mask])
    return -conditional_entropy


# TLlib, tllib/ranking/hscore.py
# (https://github.com/thuml/Transfer-Learning-Library/blob/master/tllib/ranking/hscore.py)
def _reference_h_score(features, labels):
    f = features
    y = labels
    covf = np.cov(f, rowvar=False)
    C = int(y.max() + 1)
    g = np.zeros_like(f)
    for i in range(C):
        Ef_i = np.mean(f[y == i, :], axis=0)
        g[y == i] = Ef_i
    covg = np.cov(g, rowvar=False)
    return np.trace(np.dot(np.linalg.pinv(covf, rcond=1e-15), covg))


# TLlib, tllib/ranking/hscore.py, regularized_h_score (the version of the Transfer-Learning-Library that has it)
def _reference_regularized_h_score(features, labels):
    from sklearn.covariance import LedoitWolf

    f = features.astype("float64")
    f = f - np.mean(f, axis=0, keepdims=True)
    y = labels
    C = int(y.max() + 1)
    g = np.zeros_like(f)
    cov = LedoitWolf(assume_centered=False).fit(f)
    alpha = cov.shrinkage_
    covf_alpha = cov.covariance_
    for i in range(C):
        Ef_i = np.mean(f[y == i, :], axis=0)
        g[y == i] = Ef_i
    covg = np.cov(g, rowvar=False)
    return np.trace(np.dot(np.linalg.pinv(covf_alpha, rcond=1e-15), (1 - alpha) * covg))


# Constructed data.


def _balanced_labels(n, num_classes, seed):
    return np.random.default_rng(seed).permutation(np.arange(n) % num_classes)


def _clustered(n, d, num_classes, seed, separation=2.0):
    """Balanced labels; features are the class's random mean plus unit Gaussian noise."""
    labels = _balanced_labels(n, num_classes, seed)
    rng = np.random.default_rng(seed + 1)
    means = separation * rng.normal(size=(num_classes, d))
    return means[labels] + rng.normal(size=(n, d)), labels


def _softmax_outputs(labels, num_source, strength, seed):
    """Softmax outputs of a source classifier over num_source classes whose logits favour, by `strength`, one of
    two source classes tied to each target class (strength 0: unrelated to the labels)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(labels), num_source))
    favoured = (2 * labels + rng.integers(0, 2, len(labels))) % num_source
    logits[np.arange(len(labels)), favoured] += strength
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _shuffled(labels, seed):
    return np.random.default_rng(seed).permutation(labels)


# (a) Informative inputs score above random ones and above shuffled labels.


@pytest.mark.parametrize(("n", "d"), [(50, 1280), (300, 32)])
def test_logme_prefers_informative_features(n, d):
    features, labels = _clustered(n, d, 5, seed=0)
    random_features = np.random.default_rng(1).normal(size=(n, d))
    informative = tr.logme(features, labels)
    assert informative > tr.logme(random_features, labels) + 0.5
    assert informative > tr.logme(features, _shuffled(labels, 2)) + 0.5


def test_h_score_prefers_informative_features():
    features, labels = _clustered(300, 32, 5, seed=0)
    random_features = np.random.default_rng(1).normal(size=(300, 32))
    informative = tr.h_score(features, labels)
    assert informative > 3 * tr.h_score(random_features, labels)
    assert informative > 3 * tr.h_score(features, _shuffled(labels, 2))


def test_leep_and_nce_prefer_an_informative_source_classifier():
    labels = _balanced_labels(400, 5, seed=0)
    informative = _softmax_outputs(labels, 12, strength=4.0, seed=1)
    unrelated = _softmax_outputs(labels, 12, strength=0.0, seed=1)
    shuffled = _shuffled(labels, 2)
    assert tr.leep(informative, labels) > tr.leep(unrelated, labels) + 0.3
    assert tr.leep(informative, labels) > tr.leep(informative, shuffled) + 0.3
    hard, hard_unrelated = informative.argmax(axis=1), unrelated.argmax(axis=1)
    assert tr.nce(hard, labels) > tr.nce(hard_unrelated, labels) + 0.3
    assert tr.nce(hard, labels) > tr.nce(hard, shuffled) + 0.3


# (b) Agreement with the reference implementations, n < d included.

LOGME_CASES = [(50, 1280, 5), (30, 100, 3), (64, 64, 2), (200, 32, 4), (500, 16, 10)]


@pytest.mark.parametrize(("n", "d", "num_classes"), LOGME_CASES)
def test_logme_matches_the_official_implementation_with_the_log_det_fix(n, d, num_classes):
    # Far tighter than 1e-4: a stop at 1 % instead of 0.1 %, or iterating a class past its own convergence, moves
    # the score by 1e-9 to 1e-6; the same iteration agrees to rounding.
    features, labels = _clustered(n, d, num_classes, seed=n + d)
    reference, _ = _reference_logme_fit(features, labels, pad_sigma=True)
    assert tr.logme(features, labels) == pytest.approx(reference, abs=1e-9)
    random_features = np.random.default_rng(n * d).normal(size=(n, d))
    reference, _ = _reference_logme_fit(random_features, labels, pad_sigma=True)
    assert tr.logme(random_features, labels) == pytest.approx(reference, abs=1e-9)


@pytest.mark.parametrize(("n", "d", "num_classes"), [case for case in LOGME_CASES if case[0] < case[1]])
def test_logme_differs_from_unfixed_official_implementation_by_the_missing_log_det_terms(n, d, num_classes):
    features, labels = _clustered(n, d, num_classes, seed=n + d)
    unfixed, alphas = _reference_logme_fit(features, labels)
    missing = (d - n) / (2 * n) * np.mean(np.log(alphas))
    assert missing > 1.0
    assert tr.logme(features, labels) == pytest.approx(unfixed - missing, abs=1e-4)


@pytest.mark.parametrize(("n", "d", "num_classes"), [case for case in LOGME_CASES if case[0] > case[1]])
def test_logme_agrees_with_the_icml_algorithm_when_n_exceeds_d(n, d, num_classes):
    # A different iteration to the same maximum, stopped at 1 % instead of 0.1 %: close, not equal. (With n < d
    # the evidence has no maximum and the two algorithms stop at different points.)
    features, labels = _clustered(n, d, num_classes, seed=n + d)
    assert tr.logme(features, labels) == pytest.approx(_reference_logme_icml(features, labels), abs=1e-3)


def test_logme_handles_rank_deficient_features():
    features, labels = _clustered(200, 20, 4, seed=3)
    features = np.hstack([features, features[:, :5]])  # rank 20 of 25 columns
    reference, _ = _reference_logme_fit(features, labels, pad_sigma=True)
    assert tr.logme(features, labels) == pytest.approx(reference, abs=1e-4)


@pytest.mark.parametrize(
    ("n", "num_source", "num_classes", "strength"), [(100, 10, 3, 2.0), (30, 50, 4, 1.0), (500, 1000, 10, 5.0)]
)
def test_leep_and_nce_match_tllib(n, num_source, num_classes, strength):
    labels = _balanced_labels(n, num_classes, seed=n)
    probs = _softmax_outputs(labels, num_source, strength, seed=n + 1)
    assert tr.leep(probs, labels) == pytest.approx(_reference_leep(probs, labels), abs=1e-4)
    hard = probs.argmax(axis=1)
    with np.errstate(invalid="ignore"):  # TLlib divides by P(z) = 0 for never-predicted z, then masks those out
        reference = _reference_nce(hard, labels)
    assert tr.nce(hard, labels) == pytest.approx(reference, abs=1e-4)


@pytest.mark.parametrize(("n", "d", "num_classes"), [(200, 16, 4), (500, 64, 10), (60, 60, 5), (40, 100, 3)])
def test_h_score_matches_tllib(n, d, num_classes):
    features, labels = _clustered(n, d, num_classes, seed=n + d, separation=0.5)
    assert tr.h_score(features, labels) == pytest.approx(_reference_h_score(features, labels), abs=1e-4)


# (c) Closed forms.


def test_nce_of_a_constructed_joint_distribution():
    # Counts of (target y, source z): z=0 -> y 30:10, z=1 -> y 10:30, z=2 -> y 0:20, of n = 100.
    pairs = [(0, 0)] * 30 + [(1, 0)] * 10 + [(0, 1)] * 10 + [(1, 1)] * 30 + [(1, 2)] * 20
    labels, source = (np.array(column) for column in zip(*pairs, strict=True))
    # H(Y | Z) = P(z=0) H(3/4, 1/4) + P(z=1) H(1/4, 3/4) + P(z=2) * 0
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert tr.nce(source, labels) == pytest.approx(-(0.4 + 0.4) * entropy, abs=1e-12)
    assert tr.nce(source + 7, labels + 3) == pytest.approx(-0.8 * entropy, abs=1e-12)  # only the pairing counts


def test_nce_is_zero_when_the_source_label_determines_the_target_label():
    labels = np.arange(60) % 3
    assert tr.nce(2 * labels + np.arange(60) % 2, labels) == pytest.approx(0.0, abs=1e-12)


def test_leep_of_one_hot_source_predictions_is_nce():
    # The LEEP paper: with hard (one-hot) source predictions LEEP reduces to NCE. Source class 7 is never predicted.
    labels = _balanced_labels(300, 4, seed=5)
    hard = _softmax_outputs(labels, 7, strength=1.5, seed=6).argmax(axis=1)
    one_hot = np.eye(8)[hard]
    assert tr.leep(one_hot, labels) == pytest.approx(tr.nce(hard, labels), abs=1e-12)
    assert tr.nce(hard, labels) < -0.1


def test_uninformative_source_gives_minus_the_label_entropy():
    labels = np.array([0] * 10 + [1] * 30 + [2] * 60)
    minus_entropy = 0.1 * math.log(0.1) + 0.3 * math.log(0.3) + 0.6 * math.log(0.6)
    assert tr.leep(np.full((100, 5), 0.2), labels) == pytest.approx(minus_entropy, abs=1e-12)
    assert tr.nce(np.zeros(100, dtype=int), labels) == pytest.approx(minus_entropy, abs=1e-12)


def test_h_score_of_class_mean_features_is_its_maximum():
    features, labels = _clustered(200, 16, 5, seed=7)
    means = np.stack([features[labels == c].mean(axis=0) for c in range(5)])
    assert tr.h_score(means[labels], labels) == pytest.approx(5 - 1, abs=1e-8)
    assert tr.h_score(features, labels) < 5 - 1 - 0.1


def test_h_score_cannot_discriminate_with_fewer_examples_than_dimensions():
    random_features = np.random.default_rng(8).normal(size=(40, 100))
    labels = np.arange(40) % 3
    assert tr.h_score(random_features, labels) == pytest.approx(3 - 1, abs=1e-6)


@pytest.mark.parametrize(("n", "d", "num_classes"), [(200, 16, 4), (40, 100, 3), (50, 256, 10)])
def test_regularized_h_score_matches_tllib(n, d, num_classes):
    features, labels = _clustered(n, d, num_classes, seed=n + d, separation=0.5)
    expected = _reference_regularized_h_score(features, labels)
    assert tr.regularized_h_score(features, labels) == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_regularized_h_score_tells_features_apart_with_fewer_examples_than_dimensions():
    informative, labels = _clustered(50, 512, 10, seed=11)
    random_features = np.random.default_rng(12).normal(size=(50, 512))
    assert tr.h_score(informative, labels) == pytest.approx(tr.h_score(random_features, labels), abs=1e-6)
    assert tr.regularized_h_score(informative, labels) > 1.5 * tr.regularized_h_score(random_features, labels)
    assert tr.regularized_h_score(informative, labels) > tr.regularized_h_score(informative, _shuffled(labels, 13))


# (d) Input errors.


def _valid():
    features, labels = _clustered(20, 4, 2, seed=9)
    return features, labels, _softmax_outputs(labels, 3, strength=1.0, seed=10)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f, y, p: tr.logme(f, y[:-1]), "19 entries but there are 20 examples"),
        (lambda f, y, p: tr.h_score(f[:, 0], y), "2-D array"),
        (lambda f, y, p: tr.logme(f, y * 0), "at least 2 distinct classes"),
        (lambda f, y, p: tr.h_score(f, np.zeros(20, dtype=int)), "at least 2 distinct classes"),
        (lambda f, y, p: tr.logme(np.where(f > 1, np.nan, f), y), "features must be finite"),
        (lambda f, y, p: tr.h_score(np.where(f > 1, np.inf, f), y), "features must be finite"),
        (lambda f, y, p: tr.logme(f * 0, y), "all zero"),
        (lambda f, y, p: tr.logme(f, y + 0.5), "integer class ids"),
        (lambda f, y, p: tr.logme(f, y.reshape(-1, 1)), "1-D array"),
        (lambda f, y, p: tr.leep(p[:-1], y), "19 examples"),
        (lambda f, y, p: tr.leep(np.log(p), y), "softmax"),
        (lambda f, y, p: tr.leep(p * 2, y), "summing to 1"),
        (lambda f, y, p: tr.leep(p, y * 0), "at least 2 distinct classes"),
        (lambda f, y, p: tr.leep(None, y), "source_probs is required"),
        (lambda f, y, p: tr.nce(p.argmax(axis=1)[:-1], y), "20 entries but there are 19 examples"),
        (lambda f, y, p: tr.nce(p, y), "source_labels must be a 1-D array"),
    ],
)
def test_invalid_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(*_valid())


# The registry and score_all.


def test_registry():
    assert set(tr.ESTIMATORS) == {"logme", "leep", "nce", "h_score", "reg_h_score"}
    assert {name for name, e in tr.ESTIMATORS.items() if e.needs_source} == {"leep", "nce"}
    assert all(e.name == name and e.higher_is_better and e.description for name, e in tr.ESTIMATORS.items())
    with pytest.raises(dataclasses.FrozenInstanceError):
        tr.ESTIMATORS["logme"].needs_source = True


def test_score_all_computes_what_the_inputs_allow():
    features, labels, probs = _valid()
    scores, skipped = tr.score_all(features, labels, probs)
    assert skipped == {}
    assert scores == {
        "logme": tr.logme(features, labels),
        "leep": tr.leep(probs, labels),
        "nce": tr.nce(probs.argmax(axis=1), labels),
        "h_score": tr.h_score(features, labels),
        "reg_h_score": tr.regularized_h_score(features, labels),
    }
    scores, skipped = tr.score_all(features, labels, None)
    assert set(scores) == {"logme", "h_score", "reg_h_score"}
    reason = "needs the backbone's source classifier, which this backbone does not have"
    assert skipped == {"leep": reason, "nce": reason}


def test_score_all_raises_on_invalid_inputs_instead_of_skipping():
    features, labels, probs = _valid()
    with pytest.raises(ValueError, match="features must be finite"):
        tr.score_all(np.full_like(features, np.nan), labels, None)
    with pytest.raises(ValueError, match="summing to 1"):
        tr.score_all(features, labels, probs * 3)
