"""Text datasets on the real data root: sizes, labels, the fixed holdout, the sentiment domains, the downloads."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench import data, paths
from bench.data.download import DatasetMissingError
from bench.data.text import (
    NG20_SHA256,
    R8_SHA256,
    SENTIMENT_DOMAINS,
    download_cachopo,
    download_sentiment,
    download_sms_spam,
    holdout_split,
)

R8_TRAIN = {
    "acq": 1596,
    "crude": 253,
    "earn": 2840,
    "grain": 41,
    "interest": 190,
    "money-fx": 206,
    "ship": 108,
    "trade": 251,
}
R8_TEST = {"acq": 696, "crude": 121, "earn": 1083, "grain": 10, "interest": 81, "money-fx": 87, "ship": 36, "trade": 75}


def load(name: str) -> data.LoadedDataset:
    return data.DATASETS.get(name).load()


def class_counts(ds: data.LoadedDataset, labels: np.ndarray) -> dict[str, int]:
    return dict(zip(ds.classes, np.bincount(labels, minlength=len(ds.classes)).tolist(), strict=True))


def mirror(folder: str) -> Path:
    return paths.data_root() / folder


@pytest.mark.parametrize(
    ("name", "n_train", "n_test", "n_classes"),
    [
        ("sms_spam", 4287, 1114, 2),  # 4,460 lines, less 173 that repeat a test message
        ("reuters_r8", 5485, 2189, 8),
        ("20newsgroups", 11293, 7528, 20),
        ("sentiment_sentences", 2394, 600, 2),
        ("sentiment_amazon", 799, 200, 2),
        ("sentiment_imdb", 799, 200, 2),
        ("sentiment_yelp", 797, 200, 2),
    ],
)
def test_text_dataset_sizes_and_labels(name, n_train, n_test, n_classes):
    spec = data.DATASETS.get(name)
    ds = spec.load()
    assert (ds.name, ds.modality, spec.num_classes) == (name, "text", n_classes)
    assert len(ds.train_items) == len(ds.train_labels) == n_train
    assert len(ds.test_items) == len(ds.test_labels) == n_test
    assert ds.classes == sorted(ds.classes) and len(ds.classes) == n_classes
    for labels in (ds.train_labels, ds.test_labels):
        assert labels.dtype == np.int64 and set(labels.tolist()) == set(range(n_classes))
    assert all(isinstance(t, str) and t for t in list(ds.train_items) + list(ds.test_items))


def test_sms_spam_classes_and_holdout_counts():
    ds = load("sms_spam")
    assert class_counts(ds, ds.train_labels) == {"ham": 3729, "spam": 558}  # 3,862 and 598, less test repeats
    assert class_counts(ds, ds.test_labels) == {"ham": 965, "spam": 149}  # 20 % of 4,827 and 747, rounded


def test_reuters_r8_upstream_split_is_kept_imbalanced():
    ds = load("reuters_r8")
    assert class_counts(ds, ds.train_labels) == R8_TRAIN
    assert class_counts(ds, ds.test_labels) == R8_TEST


def test_20newsgroups_per_class_counts():
    ds = load("20newsgroups")
    train, test = class_counts(ds, ds.train_labels), class_counts(ds, ds.test_labels)
    assert ds.classes[0] == "alt.atheism" and ds.classes[-1] == "talk.religion.misc"
    assert (train["rec.sport.hockey"], test["rec.sport.hockey"]) == (600, 399)
    assert (train["talk.religion.misc"], test["talk.religion.misc"]) == (377, 251)


def test_sentiment_domains_have_1000_sentences_and_keep_u0085_inside():
    for domain in SENTIMENT_DOMAINS:
        ds = load(f"sentiment_{domain}")
        assert ds.classes == ["negative", "positive"]
        assert np.bincount(ds.test_labels).tolist() == [100, 100]
        assert len(ds.train_items) >= 797  # 800, less the few sentences that repeat a test sentence
    imdb = load("sentiment_imdb")
    with_nel = [s for s in list(imdb.train_items) + list(imdb.test_items) if "\x85" in s]
    assert "The script is\x85was there a script?" in with_nel
    assert all(not s.endswith(("\t", " ")) and not s.startswith("\t") for s in with_nel)


HOLDOUT_SOURCES = {  # dataset: (folder, files, which tab-separated field is the text, test examples per class)
    "sms_spam": ("sms_spam", ["SMSSpamCollection"], 1, [965, 149]),  # 20 % of 4,827 ham and 747 spam, rounded
    "sentiment_sentences": (
        "sentiment_sentences",
        ["amazon_cells_labelled.txt", "imdb_labelled.txt", "yelp_labelled.txt"],
        0,
        [300, 300],
    ),
    "sentiment_imdb": ("sentiment_sentences", ["imdb_labelled.txt"], 0, [100, 100]),
}


@pytest.mark.parametrize("name", list(HOLDOUT_SOURCES))
def test_fixed_holdout_is_stratified_disjoint_and_stable(name):
    first, second = load(name), load(name)
    assert first.test_items == second.test_items and np.array_equal(first.test_labels, second.test_labels)
    assert first.train_items == second.train_items
    folder, files, field, per_class = HOLDOUT_SOURCES[name]
    assert np.bincount(first.test_labels).tolist() == per_class
    # every line is in the test split or the training pool, except repeats of a test text, which are in neither:
    # no test text is ever trained on
    lines = [line for f in files for line in (mirror(folder) / f).read_text(encoding="utf-8").split("\n") if line]
    texts = Counter(line.split("\t")[field].strip() for line in lines)
    train, test = Counter(t.strip() for t in first.train_items), Counter(t.strip() for t in first.test_items)
    assert not train & test
    assert train == Counter({t: n for t, n in texts.items() if t not in test})


@pytest.mark.parametrize(
    ("name", "digest"), [("sms_spam", "1e4b1a11d4186a3b"), ("sentiment_sentences", "4deb70dcb5febf34")]
)
def test_fixed_holdout_never_changes(name, digest):
    """Pinned: a change here changes every published test accuracy on these datasets."""
    test_items = load(name).test_items
    assert hashlib.sha256("\n".join(test_items).encode()).hexdigest()[:16] == digest


def test_holdout_indices_partition_and_ignore_run_seeds():
    labels = np.repeat(np.arange(3), [50, 30, 7])
    np.random.seed(1)  # global state must not matter
    pool, test = holdout_split(labels)
    np.random.seed(2)
    pool2, test2 = holdout_split(labels)
    assert np.array_equal(test, test2) and np.array_equal(pool, pool2)
    assert not set(pool) & set(test) and len(pool) + len(test) == len(labels)
    assert np.bincount(labels[test]).tolist() == [10, 6, 1]


def test_per_domain_sentiment_datasets_partition_the_combined_one():
    combined = load("sentiment_sentences")
    parts = [load(f"sentiment_{d}") for d in SENTIMENT_DOMAINS]
    # the combined pool: the domains' pools, less the few sentences another domain tests on
    assert combined.train_items == [s for p in parts for s in p.train_items if s not in combined.test_items]
    assert combined.test_items == [s for p in parts for s in p.test_items]
    assert np.array_equal(combined.test_labels, np.concatenate([p.test_labels for p in parts]))
    # distinct manifests: the feature cache must never mix a domain with the combined set
    assert len({combined.manifest} | {p.manifest for p in parts}) == 4


# Downloads, from local archives built from the mirror's files


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def write_zip(path: Path, files: dict[str, bytes]) -> str:
    path.write_bytes(zip_bytes(files))
    return path.as_uri()


def sentiment_archive(tmp_path: Path, amazon: bytes | None = None) -> str:
    """The UCI layout guessed at its most awkward: a folder with macOS metadata, inside a nested zip."""
    src = mirror("sentiment_sentences")
    inner = {f"sentiment labelled sentences/{p.name}": p.read_bytes() for p in src.glob("*_labelled.txt")}
    inner["sentiment labelled sentences/readme.txt"] = b"readme"
    inner["__MACOSX/sentiment labelled sentences/._imdb_labelled.txt"] = b"junk"
    if amazon is not None:
        inner["sentiment labelled sentences/amazon_cells_labelled.txt"] = amazon
    return write_zip(tmp_path / "sentiment.zip", {"sentiment labelled sentences.zip": zip_bytes(inner)})


def test_sms_spam_downloads_when_missing_and_loads_like_the_mirror(tmp_path, monkeypatch):
    src = mirror("sms_spam")
    reference = load("sms_spam")
    url = write_zip(
        tmp_path / "sms.zip", {"SMSSpamCollection": (src / "SMSSpamCollection").read_bytes(), "readme": b""}
    )
    monkeypatch.setattr("bench.data.text.SMS_SPAM_URL", url)
    monkeypatch.setenv("TRANSFERBENCH_DATA", str(tmp_path / "root"))
    ds = load("sms_spam")
    assert (tmp_path / "root" / "sms_spam" / "SHA256SUMS").read_bytes() == (src / "SHA256SUMS").read_bytes()
    assert ds.manifest == reference.manifest and ds.test_items == reference.test_items


def test_sentiment_download_finds_files_in_nested_archive(tmp_path):
    folder = tmp_path / "sentiment_sentences"
    download_sentiment(folder, url=sentiment_archive(tmp_path))
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["SHA256SUMS", "amazon_cells_labelled.txt", "imdb_labelled.txt", "yelp_labelled.txt"]
    )
    assert (folder / "SHA256SUMS").read_bytes() == (mirror("sentiment_sentences") / "SHA256SUMS").read_bytes()


def test_zip_download_refuses_a_wrong_or_missing_file(tmp_path):
    folder = tmp_path / "sentiment_sentences"
    with pytest.raises(ValueError, match="checksum mismatch for amazon_cells_labelled.txt"):
        download_sentiment(folder, url=sentiment_archive(tmp_path, amazon=b"tampered\t1\n"))
    assert not folder.exists()
    with pytest.raises(ValueError, match="has no file SMSSpamCollection"):
        download_sms_spam(tmp_path / "sms", url=write_zip(tmp_path / "empty.zip", {"readme": b""}))
    (tmp_path / "page.html").write_text("<html>moved</html>")
    with pytest.raises(ValueError, match="not a zip archive"):
        download_sms_spam(tmp_path / "sms", url=(tmp_path / "page.html").as_uri())
    assert not (tmp_path / "sms").exists()


@pytest.mark.parametrize(("folder", "sums"), [("reuters_r8", R8_SHA256), ("20newsgroups", NG20_SHA256)])
def test_cachopo_download_checks_each_file(tmp_path, folder, sums):
    src = mirror(folder)
    download_cachopo(tmp_path / folder, sums, url=src.as_uri() + "/")
    assert (tmp_path / folder / "SHA256SUMS").read_bytes() == (src / "SHA256SUMS").read_bytes()

    served = tmp_path / "served"
    served.mkdir()
    for name in sums:
        (served / name).write_bytes((src / name).read_bytes()[:-2] + b"x\n")
    with pytest.raises(ValueError, match="checksum mismatch"):
        download_cachopo(tmp_path / "bad", sums, url=served.as_uri() + "/")
    assert not (tmp_path / "bad" / "SHA256SUMS").exists()


def test_missing_text_dataset_offline_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERBENCH_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr("bench.data.text.CACHOPO_URL", (tmp_path / "nowhere").as_uri() + "/")
    with pytest.raises(DatasetMissingError, match="reuters_r8.*download failed") as err:
        load("reuters_r8")
    assert "ana.cachopo.org" in str(err.value) and "--data-root" in str(err.value)
