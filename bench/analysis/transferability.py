"""Transferability estimators: how well a pretrained backbone should transfer to a target dataset, scored without
training anything, from its frozen features on the target examples (and, for some, its source classifier's
predictions on them).

They are cheap proxies for the accuracy a fine-tuned model or a linear probe would reach, to rank backbones before
spending training budget on them, and to compare with the accuracies the benchmark measures. Every estimator here
is a pure float64 numpy function of arrays, and for every one of them higher is better:

- ``logme``: LogME (You et al., ICML 2021), the log marginal evidence of a Bayesian linear model on the features.
- ``leep``: LEEP (Nguyen et al., ICML 2020), from the source classifier's softmax outputs.
- ``nce``: NCE (Tran et al., ICCV 2019), from the source classifier's hard predictions.
- ``h_score``: H-score (Bao et al., ICIP 2019), a whitened between-class scatter of the features.
- ``reg_h_score``: the same with a shrunk covariance (Ibrahim et al., ECML PKDD 2022), which still tells backbones
  apart with fewer examples than feature dimensions, where ``h_score`` gives every labelling its maximum.

``ESTIMATORS`` registers them by name and ``score_all`` computes every one the inputs allow, saying why it skipped
the others (LEEP and NCE need a source classifier, which backbones without a classification head lack).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# The official LogME implementation's fixed-point iteration (thuml/LogME, LogME.py, LogME._fit_fixed_point):
# at most 11 updates of (alpha, beta), stopping once alpha / beta changes by at most 0.1 % (relative), with
# LOGME_EPSILON added to the denominators of the updates.
LOGME_MAX_ITERATIONS = 11
LOGME_TOLERANCE = 1e-3
LOGME_EPSILON = 1e-5
# Softmax outputs stored in low precision do not sum to exactly 1.
PROBABILITY_SUM_TOLERANCE = 1e-3


def _features(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0:
        raise ValueError(f"features must be a non-empty 2-D array (examples, dimensions), got shape {f.shape}")
    if not np.issubdtype(f.dtype, np.number) or np.issubdtype(f.dtype, np.complexfloating):
        raise ValueError(f"features must be real numbers, got dtype {f.dtype}")
    f = f.astype(np.float64)
    if not np.isfinite(f).all():
        bad = int((~np.isfinite(f)).any(axis=1).sum())
        raise ValueError(f"features must be finite: {bad} of {len(f)} examples have NaN or infinite values")
    return f


def _labels(labels: np.ndarray, n: int | None, name: str = "labels", min_classes: int = 2) -> tuple[np.ndarray, int]:
    """Class indices 0..k-1 (in sorted order of the distinct labels) and k, the number of distinct labels; n, if
    given, is the number of examples they must label."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class ids, got shape {y.shape}")
    if n is not None and len(y) != n:
        raise ValueError(f"{name} has {len(y)} entries but there are {n} examples")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        raise ValueError(f"{name} must be integer class ids, got dtype {y.dtype}")
    classes, index = np.unique(y, return_inverse=True)
    if len(classes) < min_classes:
        raise ValueError(f"{name} must have at least {min_classes} distinct classes, got {len(classes)}")
    return index, len(classes)


def _source_probs(source_probs: np.ndarray | None) -> np.ndarray:
    if source_probs is None:
        raise ValueError("source_probs is required: the source classifier's softmax outputs on the target examples")
    p = np.asarray(source_probs)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"source_probs must be a non-empty 2-D array (examples, source classes), got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.number) or np.issubdtype(p.dtype, np.complexfloating):
        raise ValueError(f"source_probs must be real numbers, got dtype {p.dtype}")
    p = p.astype(np.float64)
    if not np.isfinite(p).all():
        raise ValueError("source_probs must be finite")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, rtol=0, atol=PROBABILITY_SUM_TOLERANCE):
        raise ValueError(
            "source_probs rows must be probability distributions (non-negative, summing to 1): pass the softmax "
            "of the source classifier's logits, not the logits"
        )
    return p


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME: You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
    ICML 2021; the fixed-point algorithm of You et al., "Ranking and Tuning Pre-trained Models: A New Paradigm for
    Exploiting Model Hubs", JMLR 2022.

    For each class c, a Bayesian linear regression of the one-vs-rest target y_c (1 for the class, 0 otherwise) on
    the features F (n x d, used as given, no bias): weights w ~ N(0, I / alpha), y_c | F, w ~ N(F w, I / beta).
    Its log evidence, the log marginal likelihood

        L(alpha, beta) = d/2 log alpha + n/2 log beta - n/2 log 2 pi - 1/2 log det A
                         - beta/2 |y_c - F m|^2 - alpha/2 |m|^2,    A = alpha I + beta F^T F,  m = beta A^-1 F^T y_c,

    is maximised over alpha and beta by the fixed-point iteration gamma = sum_i sigma_i / (sigma_i + alpha / beta),
    alpha <- gamma / |m|^2, beta <- (n - gamma) / |y_c - F m|^2, where sigma_i are the eigenvalues of F^T F, as
    the official implementation does it (thuml/LogME, LogME.py): from alpha = beta = 1, at most 11 updates, stopping
    once alpha / beta changes by at most 0.1 %, with 1e-5 added to both denominators, and L evaluated with the last
    alpha, beta and the m they were updated from. The score is L / n averaged over the classes.

    Unlike LogME.py (a bug reported in thuml/LogME issue #23, with the fix proposed in pull request #24), log det A
    counts the d - n zero eigenvalues of F^T F when n < d, as (d - n) log alpha; without them the score is off by
    (d - n) / (2 n) log alpha, growing with d for no reason.
    When n < d the features can fit every target exactly, the evidence keeps growing with beta and the score is the
    value after the 11 updates, as in the official implementation.
    """
    f = _features(features)
    y, num_classes = _labels(labels, len(f))
    if not f.any():
        raise ValueError("features are all zero: LogME's evidence is undefined (no direction to regress on)")
    n, d = f.shape
    targets = np.eye(num_classes)[y]

    # From the smaller Gram matrix: sigma (k = min(n, d) eigenvalues of F^T F) and p[i, c] = sigma_i (u_i . y_c)^2
    # = (v_i . F^T y_c)^2, u_i and v_i the left and right singular vectors. Written with p instead of the paper's
    # x_i = u_i . y_c, nothing divides by a singular value, so rank-deficient features need no rank cut-off.
    if n > d:
        sigma, v = np.linalg.eigh(f.T @ f)
        sigma = np.clip(sigma, 0.0, None)
        p = (v.T @ (f.T @ targets)) ** 2
    else:
        sigma, u = np.linalg.eigh(f @ f.T)
        sigma = np.clip(sigma, 0.0, None)
        p = sigma[:, None] * (u.T @ targets) ** 2
    sigma = sigma[:, None]
    y_norm2 = targets.sum(axis=0)

    alpha = np.ones(num_classes)
    beta = np.ones(num_classes)
    m_norm2 = np.zeros(num_classes)
    residual2 = np.zeros(num_classes)
    active = np.ones(num_classes, dtype=bool)
    for _ in range(LOGME_MAX_ITERATIONS):
        t = alpha / beta
        shrink = sigma + t
        gamma = (sigma / shrink).sum(axis=0)
        new_m_norm2 = (p / shrink**2).sum(axis=0)
        new_residual2 = y_norm2 - (p * (sigma + 2 * t) / shrink**2).sum(axis=0)
        new_alpha = gamma / (new_m_norm2 + LOGME_EPSILON)
        new_beta = (n - gamma) / (new_residual2 + LOGME_EPSILON)
        alpha = np.where(active, new_alpha, alpha)
        beta = np.where(active, new_beta, beta)
        m_norm2 = np.where(active, new_m_norm2, m_norm2)
        residual2 = np.where(active, new_residual2, residual2)
        active &= np.abs(new_alpha / new_beta - t) / t > LOGME_TOLERANCE
        if not active.any():
            break

    log_det_a = np.log(alpha + beta * sigma).sum(axis=0) + (d - sigma.shape[0]) * np.log(alpha)
    evidence = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - n / 2 * math.log(2 * math.pi)
        - log_det_a / 2
        - beta / 2 * residual2
        - alpha / 2 * m_norm2
    )
    return float(np.mean(evidence / n))


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: Nguyen, Hassner, Seeger and Archambeau, "LEEP: A New Measure to Evaluate Transferability of Learned
    Representations", ICML 2020.

    theta(x_i) are the source classifier's softmax outputs on the n target examples (source_probs, n x source
    classes). The empirical joint distribution of target label y and source label z is
    P(y, z) = 1/n sum_{i: y_i = y} theta(x_i)_z, the conditional P(y | z) = P(y, z) / sum_y' P(y', z), and the score
    is the mean log-likelihood of the "expected empirical predictor": 1/n sum_i log sum_z P(y_i | z) theta(x_i)_z.
    At most 0; with one-hot theta (hard source predictions) it equals NCE.

    Source classes that receive no probability on any target example (P(z) = 0) are left out of the sum (their
    theta is 0 everywhere); the reference implementations turn them into NaN.
    """
    theta = _source_probs(source_probs)
    y, num_classes = _labels(labels, len(theta))
    joint = np.eye(num_classes)[y].T @ theta / len(theta)
    p_z = joint.sum(axis=0)
    seen = p_z > 0
    conditional = joint[:, seen] / p_z[seen]
    expected = theta[:, seen] @ conditional.T
    return float(np.mean(np.log(expected[np.arange(len(y)), y])))


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """NCE: Tran, Nguyen and Hassner, "Transferability and Hardness of Supervised Classification Tasks", ICCV 2019.

    The negative conditional entropy -H(Y | Z) = sum_{y, z} P(y, z) log P(y | z) of the target labels Y given the
    source labels Z, P the empirical joint distribution of the n (y_i, z_i) pairs (with 0 log 0 = 0). The paper
    defines it for source and target labels of the same examples; as in the LEEP paper and TLlib
    (tllib/ranking/nce.py), z_i here is the source classifier's hard prediction, the argmax of its outputs.
    0 is the best possible score (the source label determines the target label), -H(Y) the worst (it says nothing
    about the target label).
    """
    z, num_source = _labels(source_labels, None, name="source_labels", min_classes=1)
    y, num_classes = _labels(labels, len(z))
    joint = np.bincount(y * num_source + z, minlength=num_classes * num_source).reshape(num_classes, num_source)
    joint = joint / len(y)
    p_z = np.broadcast_to(joint.sum(axis=0), joint.shape)
    seen = joint > 0
    return float(np.sum(joint[seen] * np.log(joint[seen] / p_z[seen])))


PINV_RCOND = 1e-15  # TLlib's pseudo-inverse cut-off: eigenvalues below this times the largest count as zero


def _whitened_basis(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The thin SVD of the centred features, ``centred = U diag(s) V^T``, and ``P U``: each column of U with every
    entry replaced by the mean over its example's class. Both H-scores reduce to sums over these n columns instead
    of inverting a d x d covariance (the between-class scatter lies in the span of V), which is exact and costs
    O(n^2 d) rather than O(d^3): milliseconds, not seconds, for 1280-dimensional features."""
    f = _features(features)
    y, num_classes = _labels(labels, len(f))
    centred = f - f.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    counts = np.bincount(y, minlength=num_classes)
    class_mean_u = (np.eye(num_classes)[y].T @ u) / counts[:, None]
    return u, s, class_mean_u[y], len(f)


def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score: Bao, Li, Huang, Zhang, Zheng and Tong, "An Information-Theoretic Approach to Transferability in Task
    Transfer Learning", ICIP 2019; the value TLlib computes (tllib/ranking/hscore.py).

    tr(pinv(cov(f)) cov(E[f | y])): cov(f) is the covariance of the (centred) features, E[f | y] replaces each
    example's features by the mean features of its class, so cov(E[f | y]) is the between-class covariance
    (both with the 1 / (n - 1) of np.cov), and pinv is the Moore-Penrose pseudo-inverse, cutting eigenvalues
    below 1e-15 times the largest. With the SVD of the centred features this is sum_i ||P u_i||^2 over the kept
    singular vectors (``_whitened_basis``). At most (number of classes - 1), reached when the features are
    constant within each class. With n <= d + 1 generic features are whitened perfectly and every labelling
    scores that maximum, so H-score only discriminates between backbones when there are more examples than
    dimensions.
    """
    _, s, pu, _ = _whitened_basis(features, labels)
    kept = s**2 > PINV_RCOND * s.max() ** 2
    return float(np.sum(pu[:, kept] ** 2))


def regularized_h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score with a shrunk feature covariance: Ibrahim, Ponomareva and Mazumder, "Newer is not always better:
    Rethinking transferability metrics, their peculiarities, stability and performance", ECML PKDD 2022; the value
    TLlib computes (tllib/ranking/hscore.py, ``regularized_h_score``).

    tr(pinv(S) (1 - a) cov(E[f | y])), with S = (1 - a) C + a tr(C) / d I the Ledoit-Wolf estimate of the feature
    covariance, C the empirical covariance (1 / n), a its shrinkage (``sklearn.covariance.ledoit_wolf_shrinkage``)
    and the between-class covariance with 1 / (n - 1), as in TLlib. On the SVD of the centred features S has the
    eigenvalues l_i = (1 - a) s_i^2 / n + a tr(C) / d along the right singular vectors, where the between-class
    scatter lies, so the score is (1 - a) / (n - 1) sum_i ||P u_i||^2 s_i^2 / l_i. Unlike ``h_score`` it tells
    backbones apart when there are fewer examples than feature dimensions, as at a few examples per class.
    """
    from sklearn.covariance import ledoit_wolf_shrinkage

    f = _features(features)
    u, s, pu, n = _whitened_basis(f, labels)
    shrinkage = float(ledoit_wolf_shrinkage(f - f.mean(axis=0)))
    mu = float(np.sum(s**2) / n / f.shape[1])  # tr(C) / d
    eigen = (1 - shrinkage) * s**2 / n + shrinkage * mu
    kept = eigen > PINV_RCOND * eigen.max()
    return float((1 - shrinkage) / (n - 1) * np.sum(np.sum(pu[:, kept] ** 2, axis=0) * s[kept] ** 2 / eigen[kept]))


@dataclass(frozen=True)
class Estimator:
    """A transferability estimator: ``score(features, labels, source_probs)`` returns a float, higher is better.

    ``needs_source``: it needs ``source_probs``, the source classifier's softmax outputs on the target examples.
    """

    name: str
    needs_source: bool
    description: str
    score: Callable[[np.ndarray, np.ndarray, np.ndarray | None], float]
    higher_is_better: bool = True


ESTIMATORS: dict[str, Estimator] = {
    e.name: e
    for e in (
        Estimator(
            "logme",
            needs_source=False,
            description="LogME (You et al. 2021): log evidence of Bayesian linear regression of labels on features",
            score=lambda features, labels, source_probs: logme(features, labels),
        ),
        Estimator(
            "leep",
            needs_source=True,
            description="LEEP (Nguyen et al. 2020): log-likelihood of the target labels via the source classifier",
            score=lambda features, labels, source_probs: leep(source_probs, labels),
        ),
        Estimator(
            "nce",
            needs_source=True,
            description="NCE (Tran et al. 2019): -H(target label | source classifier's argmax label)",
            score=lambda features, labels, source_probs: nce(_source_probs(source_probs).argmax(axis=1), labels),
        ),
        Estimator(
            "h_score",
            needs_source=False,
            description="H-score (Bao et al. 2019): tr(pinv(cov(f)) cov(E[f | y])) of the features",
            score=lambda features, labels, source_probs: h_score(features, labels),
        ),
        Estimator(
            "reg_h_score",
            needs_source=False,
            description="regularised H-score (Ibrahim et al. 2022): H-score with a Ledoit-Wolf shrunk cov(f)",
            score=lambda features, labels, source_probs: regularized_h_score(features, labels),
        ),
    )
}

NO_SOURCE = "needs the backbone's source classifier, which this backbone does not have"


def score_all(
    features: np.ndarray, labels: np.ndarray, source_probs: np.ndarray | None
) -> tuple[dict[str, float], dict[str, str]]:
    """Every estimator in ``ESTIMATORS`` on one backbone's features of one target dataset.

    Returns (scores, skipped): scores by estimator name, and for each estimator not computed the reason (those that
    need ``source_probs`` when it is None). Invalid inputs raise ValueError rather than being skipped.
    """
    scores: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for name, estimator in ESTIMATORS.items():
        if estimator.needs_source and source_probs is None:
            skipped[name] = NO_SOURCE
        else:
            scores[name] = estimator.score(features, labels, source_probs)
    return scores, skipped
