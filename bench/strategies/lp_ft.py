"""LP-FT (Kumar et al., ICLR 2022): linear probe first, then fine-tune everything from the probed head.

Starting the fine-tune from a trained head instead of a random one keeps early gradients from distorting
the pretrained features. The probe phase is the converged logistic regression of ``feature_extraction``, its
``C`` chosen on the validation split from a grid (as Kumar et al. tune the probe before fine-tuning: tuned jointly
with the fine-tuning rate, a few trials left a weak probe behind); then the usual loop fine-tunes the whole model,
and early stopping (``training.patience``) keeps the probe itself when no step validates better.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.backbones.base import Classifier
from bench.strategies.base import Hyperparameter, Hyperparameters, Strategy, register_strategy


@register_strategy
class LPFT(Strategy):
    name = "lp_ft"
    description = "linear probe on frozen features, then fine-tune all weights from the probed head (Kumar et al. 2022)"
    hyperparameters = {
        "lr": Hyperparameter(
            1e-6, 1e-3, scale="log", default=3e-5, source="fine-tuning from a trained head takes a smaller rate"
        )
    }
    # The probe was fit on features of BatchNorm's running statistics: fine-tuning keeps them, so the head still
    # reads the features it was fit to. With batch statistics (train mode) the features shift under the head at
    # the first step and the run kept its probe or fell below it: CIFAR-10 at 20 and 100 per class, seed 0,
    # 39.4 and 58.9 % against 50.6 and 59.4 % frozen (benchmarks/regularisers.py).
    batchnorm = "frozen"

    def before_fit(self, model: Classifier, hp: Hyperparameters, probe: Callable[[float | None], None]) -> None:
        probe(None)
