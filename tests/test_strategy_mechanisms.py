"""Each strategy does what its paper says: penalties match their formulas, frozen weights stay frozen."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_experiment

from bench import backbones, config, data, training_run
from bench.backbones.base import Classifier
from bench.matrix import expand
from bench.probe import fit_probe
from bench.strategies import get_strategy
from bench.training_run import CellTrainer

ALL = ["bitfit", "feature_extraction", "l1", "l1sp", "l2", "l2sp", "layerwise_lr", "lora", "lp_ft", "partial"]
HP = {
    "lr": 1e-2,
    "weight_decay": 1e-4,
    "lambda": 1e-3,
    "alpha": 1e-2,
    "beta": 1e-3,
    "C": 0.1,
    "k": 2,
    "decay": 0.5,
    "rank": 4,
}


@pytest.fixture(scope="module")
def trainers():
    exp = config.parse(tiny_experiment(strategies=ALL))
    ds = data.DATASETS.get("cifar10").load()
    return {cell.strategy: CellTrainer(cell, exp, ds) for cell in expand(exp)}


def _model() -> Classifier:
    torch.manual_seed(0)
    return Classifier(backbones.resolve("tiny_image").build(pretrained=True), 10)


def _shift(model: Classifier, amount: float = 0.01) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(amount * torch.randn_like(p))


@pytest.mark.parametrize("name", ["l2sp", "l1sp"])
def test_sp_penalty_is_zero_at_the_pretrained_weights_up_to_the_head(name):
    model, s = _model(), get_strategy(name)
    s.param_groups(model, HP)
    head = HP["beta"] / 2 * model.head.weight.pow(2).sum()
    assert torch.allclose(s.extra_loss(model, HP), head)


def test_l2sp_value_and_gradient_match_the_formula():
    model, s = _model(), get_strategy("l2sp")
    start = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    s.param_groups(model, HP)
    _shift(model)
    loss = s.extra_loss(model, HP)
    bb = dict(model.backbone.named_parameters())
    expected = HP["alpha"] / 2 * sum((bb[n] - start[n]).pow(2).sum() for n in bb)
    expected = expected + HP["beta"] / 2 * model.head.weight.pow(2).sum()
    assert torch.allclose(loss, expected, rtol=1e-5)
    loss.backward()
    w = bb["model.conv_stem.weight"]
    assert torch.allclose(w.grad, HP["alpha"] * (w - start["model.conv_stem.weight"]), rtol=1e-4, atol=1e-9)
    assert torch.allclose(model.head.weight.grad, HP["beta"] * model.head.weight, rtol=1e-5)


def test_l1sp_value_and_gradient_match_the_formula():
    model, s = _model(), get_strategy("l1sp")
    start = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    s.param_groups(model, HP)
    _shift(model)
    loss = s.extra_loss(model, HP)
    bb = dict(model.backbone.named_parameters())
    expected = HP["alpha"] * sum((bb[n] - start[n]).abs().sum() for n in bb)
    assert torch.allclose(loss, expected + HP["beta"] / 2 * model.head.weight.pow(2).sum(), rtol=1e-5)
    loss.backward()
    w = bb["model.conv_stem.weight"]
    assert torch.equal(w.grad, HP["alpha"] * torch.sign(w - start["model.conv_stem.weight"]))


def test_l1_gradient_has_the_weights_sign():
    model, s = _model(), get_strategy("l1")
    s.param_groups(model, HP)
    s.extra_loss(model, HP).backward()
    w = model.backbone.model.conv_stem.weight
    assert torch.equal(torch.sign(w.grad), torch.sign(w.detach()))
    assert torch.allclose(w.grad.abs(), torch.full_like(w, HP["lambda"]))


def test_l2_penalty_value_and_gradient():
    model, s = _model(), get_strategy("l2")
    s.param_groups(model, HP)
    loss = s.extra_loss(model, HP)
    assert torch.allclose(loss, HP["lambda"] / 2 * sum(p.pow(2).sum() for p in model.parameters()), rtol=1e-5)
    loss.backward()
    w = model.backbone.model.conv_stem.weight
    assert torch.allclose(w.grad, HP["lambda"] * w.detach(), rtol=1e-5)


def _changed(before: dict, model: Classifier) -> set[str]:
    return {n for n, p in model.named_parameters() if n in before and not torch.equal(before[n], p.detach())}


@pytest.mark.parametrize("name", ["partial", "bitfit", "feature_extraction"])
def test_frozen_parameters_are_bit_identical_after_training(trainers, name):
    t = trainers[name]
    before = {n: p.detach().clone() for n, p in t.build_model(0).named_parameters()}
    model = t.run(HP, seed=0).model
    changed = _changed(before, model)
    assert {"head.weight", "head.bias"} <= changed
    if name == "feature_extraction":
        assert changed == {"head.weight", "head.bias"}
    if name == "bitfit":
        assert all(n.endswith("bias") or n.startswith("head.") for n in changed)
        assert any(n.startswith("backbone.") for n in changed)
    if name == "partial":
        blocks = model.backbone.blocks()
        top = {f"backbone.{n}" for block in blocks[-HP["k"] :] for n in block}
        assert changed - {"head.weight", "head.bias"} <= top and changed & top
        frozen = {f"backbone.{n}" for block in blocks[: -HP["k"]] for n in block}
        assert not changed & frozen


def test_lp_ft_fine_tunes_from_the_converged_probe_with_C_cross_validated_on_its_training_examples(
    trainers, monkeypatch
):
    entries, chosen = [], []
    real_fit, real_cv = training_run.fit, training_run.cv_C

    def spy(module, *args, **kwargs):
        entries.append(module.head.weight.detach().clone())
        return real_fit(module, *args, **kwargs)

    def cv(*args, **kwargs):
        chosen.append(real_cv(*args, **kwargs))
        return chosen[-1]

    monkeypatch.setattr(training_run, "fit", spy)
    monkeypatch.setattr(training_run, "cv_C", cv)
    t = trainers["lp_ft"]
    result = t.run(HP, seed=0)
    split = t.split(0)
    assert len(split.val) > 0  # LP-FT holds out validation examples; its probe never sees them
    train = t._feature_batches(t.build_model(0), split)["train"]
    probe = fit_probe(train.items, torch.from_numpy(train.labels), len(t.dataset.classes), chosen[0][0])
    assert len(entries) == 1 and torch.allclose(entries[0], probe.weight)
    assert result.probe.iterations > 0 and not torch.equal(result.model.head.weight, entries[0])  # then it trained


def test_lora_trains_a_small_fraction_and_leaves_base_weights_unchanged(trainers):
    t = trainers["lora"]
    before = {n: p.detach().clone() for n, p in t.build_model(0).backbone.named_parameters()}
    model = t.run(HP, seed=0).model
    params = dict(model.backbone.named_parameters())
    lora = {n: p for n, p in params.items() if "lora_" in n}
    assert lora and all(p.requires_grad for p in lora.values())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable < 0.1 * sum(p.numel() for p in model.parameters())
    base = {n.replace(".base_layer", ""): p for n, p in params.items() if "lora_" not in n}
    assert set(base) == set(before)
    assert all(torch.equal(base[n].detach(), before[n]) for n in before)
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in lora.items() if "lora_B" in n)


def test_layerwise_learning_rates_decrease_toward_the_input():
    model, s = _model(), get_strategy("layerwise_lr")
    groups = s.param_groups(model, HP)
    lrs = [g["lr"] for g in groups]
    assert lrs[-1] == HP["lr"] and all(a < b for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[-2] == pytest.approx(HP["lr"] * HP["decay"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def _batch(n: int = 6) -> torch.Tensor:
    torch.manual_seed(2)
    return torch.rand(n, 3, 32, 32)


def test_the_step_a_strategy_sees_is_the_step_the_loop_computed():
    """forward, then penalty, then backward: the features are the backbone's (in the graph), the logits the head's
    of those features, the labels the batch's, the number counts steps."""
    from bench.loop import Batches, Schedule, fit

    model, seen = _model(), []

    def record(step):
        seen.append(step.number)
        assert torch.allclose(step.logits, model.head(step.features))
        assert torch.allclose(step.features, model.backbone(step.inputs), atol=1e-5)  # train mode: same batch
        assert step.features.requires_grad and step.features.grad_fn is not None and step.labels.dtype == torch.long
        return None

    x, y = _batch(8), torch.arange(8) % 10
    batches = Batches(x, y.numpy(), torch.arange(8).numpy(), 4, lambda b: b, torch.device("cpu"))
    fit(model, [{"params": model.parameters()}], batches, batches, Schedule(3, 1), 1e-4, 0.0, 0, extra_loss=record)
    assert seen == [0, 1, 2]


def test_bss_penalty_is_eta_times_the_smallest_squared_singular_value_with_its_gradient():
    from bench.strategies.bss import shrinkage

    torch.manual_seed(3)
    u, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(10, 6, dtype=torch.float64))
    sigma = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    features = (u * sigma) @ v.T  # 6 x 10, singular values sigma
    features.requires_grad_(True)
    loss = 1e-3 * shrinkage(features)
    assert torch.isclose(loss, torch.tensor(1e-3 * 0.25, dtype=torch.float64))
    loss.backward()
    # d sigma_min^2 / dF = 2 sigma_min u_min v_min^T
    expected = 1e-3 * 2 * 0.5 * torch.outer(u[:, -1], v[:, -1])
    assert torch.allclose(features.grad, expected, atol=1e-10)
    assert torch.isclose(shrinkage(features.detach(), k=2), torch.tensor(0.25 + 1.0, dtype=torch.float64))


def test_bss_strategy_penalises_the_features_of_the_step():
    from bench.loop import Step
    from bench.strategies.bss import shrinkage

    model, x = _model(), _batch()
    feats = model.backbone(x)
    step = Step(x, feats, model.head(feats), torch.zeros(6, dtype=torch.long), 0)
    s = get_strategy("bss")
    s.param_groups(model, {**HP, "eta": 0.01})
    assert torch.allclose(s.extra_loss(model, {**HP, "eta": 0.01}, step), 0.01 * shrinkage(feats))


def test_delta_penalty_is_zero_at_the_start_and_its_formula_after_the_backbone_moved():
    from bench.loop import Step

    model, x, hp = _model(), _batch(), {**HP, "alpha": 0.2}
    s = get_strategy("delta")
    groups = s.param_groups(model, hp)
    assert groups[0]["weight_decay"] == 0.0 and len(groups[1]["params"]) == 2  # decay on the head only
    model.eval()  # the same BatchNorm statistics for both, so the start is exactly the reference

    def step_of(m):
        feats = m.backbone(x)
        return Step(x, feats, m.head(feats), torch.zeros(6, dtype=torch.long), 0)

    assert s.extra_loss(model, hp, step_of(model)).item() == pytest.approx(0.0, abs=1e-10)
    start = s.reference(x)
    _shift(model)
    step = step_of(model)
    step.features.retain_grad()
    loss = s.extra_loss(model, hp, step)
    diff = step.features.detach() - start
    assert torch.isclose(loss, 0.2 / 2 * diff.pow(2).sum(dim=1).mean(), rtol=1e-5)
    loss.backward()
    assert torch.allclose(step.features.grad, 0.2 * diff / 6, rtol=1e-4, atol=1e-8)  # d/df of alpha/2 mean ||.||^2
    assert all(p.grad is None for p in s.reference.parameters())  # the reference never trains


def test_a_two_argument_extra_loss_of_an_older_plugin_still_works():
    from bench.loop import Step
    from bench.strategies.base import Strategy, penalty

    class Old(Strategy):
        name, description = "old", "an extra_loss without the step"

        def extra_loss(self, model, hp):
            return torch.tensor(1.5)

    step = Step(None, torch.zeros(1), torch.zeros(1), torch.zeros(1), 0)
    assert penalty(Old(), _model(), HP)(step).item() == 1.5


def test_each_training_run_gets_a_fresh_strategy_instance(monkeypatch):
    from bench.strategies import STRATEGIES, Strategy

    seen: list[Strategy] = []  # the instances themselves: an id alone could be reused once one is collected

    class Recording(Strategy):
        name, description = "test_recording", "records the instance each training run calls"

        def param_groups(self, model, hp):
            assert not hasattr(self, "_groups"), "a run saw the state of an earlier one"
            self._groups = super().param_groups(model, hp)
            seen.append(self)
            return self._groups

    monkeypatch.setitem(STRATEGIES._entries, Recording.name, Recording)
    exp = config.parse(tiny_experiment(strategies=[Recording.name], training={"epochs": 1, "batch_size": 16}))
    t = CellTrainer(expand(exp)[0], exp, data.DATASETS.get("cifar10").load())
    t.run(HP, seed=0)
    t.run(HP, seed=1)
    assert len(seen) == 2 and len({id(s) for s in seen}) == 2
