"""Per-run test metrics on constructed predictions with known answers."""

import numpy as np
from sklearn.metrics import f1_score

from bench.metrics import classification_metrics


def test_metrics_of_known_predictions():
    true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 1, 0, 2])
    m = classification_metrics(pred, true, ["a", "b", "c"])
    assert m["test_acc"] == 6 / 8
    assert m["per_class_acc"] == {"a": 0.75, "b": 1.0, "c": 0.5}
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["test_macro_f1"] == f1_score(true, pred, average="macro")


def test_a_class_absent_from_the_test_split_has_no_accuracy():
    m = classification_metrics(np.array([0, 1]), np.array([0, 1]), ["a", "b", "c"])
    assert m["per_class_acc"]["c"] is None and m["test_acc"] == 1.0


def test_the_same_as_scikit_learn_on_random_predictions_with_absent_classes():
    from sklearn.metrics import confusion_matrix

    rng = np.random.default_rng(0)
    for _ in range(200):
        k = int(rng.integers(2, 8))
        true, pred = rng.integers(0, k - 1, 30), rng.integers(0, k, 30)  # the last class never true, maybe predicted
        m = classification_metrics(pred, true, [str(c) for c in range(k)])
        labels = np.arange(k)
        assert m["confusion_matrix"] == confusion_matrix(true, pred, labels=labels).tolist()
        expected = f1_score(true, pred, labels=labels, average="macro", zero_division=0)
        assert abs(m["test_macro_f1"] - expected) < 1e-12
