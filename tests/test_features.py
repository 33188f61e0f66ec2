"""The feature cache: computed once, reused across requests and processes, invalidated by any input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from bench import backbones, data, features, paths

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def own_feature_cache(tmp_path, monkeypatch, shared_cache):
    """A feature cache of this test's own; decoded data and converted weights stay shared."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for kind in ("datasets", "weights"):
        (shared_cache / kind).mkdir(exist_ok=True)
        (cache / kind).symlink_to(shared_cache / kind)
    monkeypatch.setenv("TRANSFERBENCH_CACHE", str(cache))


@pytest.fixture(scope="module")
def cifar():
    return data.DATASETS.get("cifar10").load()


def _backbone(pretrained=True, input_size=32):
    return backbones.resolve("tiny_image").build(pretrained=pretrained, input_size=input_size)


@pytest.fixture
def counted(monkeypatch):
    """Counts the examples whose features are really computed."""
    calls = []
    real = features.extract

    def extract(backbone, items, labels, indices, *args, **kwargs):
        calls.append(len(indices))
        return real(backbone, items, labels, indices, *args, **kwargs)

    monkeypatch.setattr(features, "extract", extract)
    return calls


def _get(bb, ds, idx, manifest=None):
    return features.cached_features(
        bb, ds.train_items, ds.train_labels, np.asarray(idx), manifest or ds.manifest, "train", 16, CPU
    )


def test_second_request_computes_nothing_and_matches_direct_extraction(cifar, counted):
    bb, idx = _backbone(), [30, 5, 17, 2]
    first = _get(bb, cifar, idx)
    again = _get(bb, cifar, idx)
    assert counted == [4] and torch.equal(first, again)
    direct = features.extract(bb, cifar.train_items, cifar.train_labels, np.asarray(idx), 16, CPU)
    assert torch.allclose(first, direct, atol=1e-5)  # in the order asked for, not sorted


def test_only_unseen_examples_are_computed(cifar, counted):
    bb = _backbone()
    _get(bb, cifar, range(10))
    subset = _get(bb, cifar, [3, 1])
    _get(bb, cifar, range(5, 15))
    assert counted == [10, 5]
    assert torch.equal(subset, _get(bb, cifar, range(10))[[3, 1]])


@pytest.mark.parametrize("change", ["weights", "preprocessing", "dataset files"])
def test_any_changed_input_invalidates(cifar, counted, change):
    _get(_backbone(), cifar, range(4))
    if change == "weights":
        _get(_backbone(pretrained=False), cifar, range(4))
    elif change == "preprocessing":
        _get(_backbone(input_size=48), cifar, range(4))
    else:
        _get(_backbone(), cifar, range(4), manifest="another-manifest")
    assert counted == [4, 4]


@pytest.mark.slow
def test_another_process_reuses_the_cache(cifar, counted):
    _get(_backbone(), cifar, range(6))
    script = (
        "import numpy as np, torch\n"
        "from bench import backbones, data, features\n"
        "calls = []\n"
        "real = features.extract\n"
        "features.extract = lambda *a, **k: calls.append(1) or real(*a, **k)\n"
        "ds = data.DATASETS.get('cifar10').load()\n"
        "bb = backbones.resolve('tiny_image').build(pretrained=True, input_size=32)\n"
        "f = features.cached_features(bb, ds.train_items, ds.train_labels, np.arange(6), ds.manifest, 'train', 16,"
        " torch.device('cpu'))\n"
        "assert f.shape == (6, 256) and not calls, calls\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.slow
def test_concurrent_writers_of_one_entry_never_corrupt_it(cifar):
    """Nodes of a cluster sharing a mounted cache folder: three processes fill one entry at the same moment, each
    with examples the others lack. Each gets the right features; the entry left is whole and right."""
    go = paths.cache_root() / "go"
    script = (
        "import sys, time, numpy as np, torch\n"
        "from pathlib import Path\n"
        "from bench import backbones, data, features\n"
        "ds = data.DATASETS.get('cifar10').load()\n"
        "bb = backbones.resolve('tiny_image').build(pretrained=True, input_size=32)\n"
        "idx = np.arange(int(sys.argv[1]), int(sys.argv[1]) + 8)\n"
        "while not Path(sys.argv[2]).exists(): time.sleep(0.01)\n"
        "got = features.cached_features(bb, ds.train_items, ds.train_labels, idx, ds.manifest, 'train', 16,"
        " torch.device('cpu'))\n"
        "want = features.extract(bb, ds.train_items, ds.train_labels, idx, 16, torch.device('cpu'))\n"
        "assert torch.allclose(got, want, atol=1e-5)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(start), str(go)], stderr=subprocess.PIPE, text=True)
        for start in (0, 4, 8)
    ]
    go.touch()
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:]
    (entry,) = (paths.cache_root() / "features").iterdir()  # one entry, no temporary beside it
    stored = torch.load(entry, weights_only=True)
    have = stored["indices"].numpy()
    assert len(have) >= 8 and (np.diff(have) > 0).all()  # whole: sorted, no duplicates (the last writer's set)
    direct = features.extract(_backbone(), cifar.train_items, cifar.train_labels, have, 16, CPU)
    assert torch.allclose(stored["features"], direct, atol=1e-5)
