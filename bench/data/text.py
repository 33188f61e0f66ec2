"""Text datasets: SMS Spam, Reuters R8, 20 Newsgroups and Sentiment Labelled Sentences (three domains).

Items are lists of str; labels index into the sorted class names. Files are split into lines at ``\\n`` only:
``str.splitlines()`` would also break at the U+0085 inside some imdb sentences. Datasets without an upstream
test split get a fixed stratified one (``holdout_split``), the same in every run.

Downloads check every file against the SHA-256 listed in the data mirror's ``SHA256SUMS``, and then write that
same list, so a downloaded folder has the mirror's manifest.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from bench.data.base import DatasetSpec, LoadedDataset, manifest_of, register_dataset
from bench.data.download import download, fetch

HOLDOUT_SEED = 20150  # never change: it decides which examples are the test split
HOLDOUT_FRACTION = 0.2

SMS_SPAM_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
SENTIMENT_URL = "https://archive.ics.uci.edu/static/public/331/sentiment+labelled+sentences.zip"
CACHOPO_URL = "https://ana.cachopo.org/datasets-for-single-label-text-categorization/"  # + file name

SMS_SPAM_SHA256 = {"SMSSpamCollection": "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"}
SENTIMENT_SHA256 = {
    "amazon_cells_labelled.txt": "49df8059de0eb9c2c13253f9d33a579bc56efc0f620dde2f6be1ec74c59893cb",
    "imdb_labelled.txt": "aef2e49e3da25714d61175e3a6e68eeef74a20a2f914318dc3be9947ea86512d",
    "yelp_labelled.txt": "c76468b7b5c6e56a0804d728345c5f84aa2142ddb214420f61cc9cfd4c00d2ea",
}
R8_SHA256 = {
    "r8-test-all-terms.txt": "2cda485b855244b8995a67b81edc691470059225776627d3c45545206f61a1b2",
    "r8-train-all-terms.txt": "f2cebcc0203f9092db55fc11b98377a5c30407121b1d633583580e36d0668ed9",
}
NG20_SHA256 = {
    "20ng-test-no-short.txt": "142b7b2df7726b9af5cb4a285af9c7a6aba49dfd9f4834472716ab0036b75283",
    "20ng-train-no-short.txt": "914304e99389a2b98aeb7e96abaa581ef7d46e2784738709ced2f176f21f72c7",
}
SENTIMENT_FILES = {"amazon": "amazon_cells_labelled.txt", "imdb": "imdb_labelled.txt", "yelp": "yelp_labelled.txt"}
SENTIMENT_DOMAINS = tuple(SENTIMENT_FILES)
SENTIMENT_CLASSES = ["negative", "positive"]  # the files' labels 0 and 1


# Reading


def _tab_rows(path: Path) -> list[tuple[str, str]]:
    """The two tab-separated fields of every non-empty line; lines end at ``\\n`` only."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: expected two tab-separated fields, found {len(fields)}")
        rows.append((fields[0], fields[1]))
    return rows


def _label_indices(names: list[str], classes: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    return np.asarray([index[name] for name in names], dtype=np.int64)


def holdout_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed test split of a dataset that has none upstream: ``HOLDOUT_FRACTION`` of each class (rounded),
    drawn with ``HOLDOUT_SEED``, independent of run seeds. Returns sorted (training pool, test) indices."""
    rng = np.random.default_rng(HOLDOUT_SEED)
    test = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test.append(rng.permutation(idx)[: round(HOLDOUT_FRACTION * len(idx))])
    test_idx = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(labels)), test_idx), test_idx


def _pool_and_test(texts: list[str], labels: np.ndarray) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    pool, test = holdout_split(labels)
    return _unseen([texts[i] for i in pool], labels[pool], [texts[i] for i in test], labels[test])


def _unseen(
    train: list[str], train_labels: np.ndarray, test: list[str], test_labels: np.ndarray
) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """The training pool without the texts that also occur in the test split (SMS Spam repeats some messages word
    for word: 116 of its 1,114 test messages; spaces at the ends do not count), so no test text is trained on."""
    tested = {t.strip() for t in test}
    kept = [i for i, t in enumerate(train) if t.strip() not in tested]
    return [train[i] for i in kept], train_labels[kept], test, test_labels


def read_sms_spam(folder: Path) -> LoadedDataset:
    """``ham|spam<TAB>text`` lines; the test split is the fixed holdout."""
    rows = _tab_rows(folder / "SMSSpamCollection")
    classes = sorted({label for label, _ in rows})
    labels = _label_indices([label for label, _ in rows], classes)
    parts = _pool_and_test([text for _, text in rows], labels)
    return LoadedDataset("sms_spam", "text", classes, *parts, manifest_of(folder))


def read_labelled_text(name: str, folder: Path, train_file: str, test_file: str) -> LoadedDataset:
    """Upstream train and test files of ``label<TAB>text`` lines."""
    train, test = _tab_rows(folder / train_file), _tab_rows(folder / test_file)
    classes = sorted({label for label, _ in train + test})
    return LoadedDataset(
        name,
        "text",
        classes,
        [text for _, text in train],
        _label_indices([label for label, _ in train], classes),
        [text for _, text in test],
        _label_indices([label for label, _ in test], classes),
        manifest_of(folder),
    )


def read_sentiment(name: str, folder: Path, domains: tuple[str, ...]) -> LoadedDataset:
    """``sentence<TAB>0|1`` lines of the given domains, concatenated in order. Each domain gets its own holdout,
    so a one-domain dataset's test split is exactly its part of the combined one (its training pool loses the few
    sentences that another domain tests on)."""
    train_items, train_labels, test_items, test_labels = [], [], [], []
    for domain in domains:
        rows = _tab_rows(folder / SENTIMENT_FILES[domain])
        labels = _label_indices([label for _, label in rows], ["0", "1"])
        xtr, ytr, xte, yte = _pool_and_test([sentence.strip() for sentence, _ in rows], labels)
        train_items += xtr
        test_items += xte
        train_labels.append(ytr)
        test_labels.append(yte)
    train_items, train_labels, test_items, test_labels = _unseen(
        train_items, np.concatenate(train_labels), test_items, np.concatenate(test_labels)
    )
    manifest = manifest_of(folder)
    if domains != SENTIMENT_DOMAINS:  # the feature cache keys on the manifest, not the name: keep subsets apart
        manifest = hashlib.sha256(f"{manifest}:{','.join(domains)}".encode()).hexdigest()[:16]
    return LoadedDataset(
        name,
        "text",
        SENTIMENT_CLASSES,
        train_items,
        train_labels,
        test_items,
        test_labels,
        manifest,
    )


# Downloading


def _write_sums(folder: Path, sums: dict[str, str]) -> None:
    """The folder's ``SHA256SUMS`` (written last: its presence marks the folder complete)."""
    (folder / "SHA256SUMS").write_text("".join(f"{sums[name]}  {name}\n" for name in sorted(sums)))


def _zip_files(blob: bytes) -> dict[str, bytes]:
    """Every file of a zip archive by base name, looking inside nested zips and skipping macOS metadata."""
    found = {}
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        for info in archive.infolist():
            if info.is_dir() or info.filename.startswith("__MACOSX/"):
                continue
            content = archive.read(info)
            if info.filename.endswith(".zip"):
                found.update(_zip_files(content))
            else:
                found[PurePosixPath(info.filename).name] = content
    return found


def download_from_zip(folder: Path, url: str, sums: dict[str, str]) -> None:
    """Fetch a zip archive, find the files of ``sums`` in it by name, check each one's SHA-256 and write them.

    The archive's own checksum is not published, so its contents are checked instead; nothing is written unless
    every file matches. Raises ``OSError`` when the download fails and ``ValueError`` on a missing or wrong file.
    """
    with tempfile.TemporaryDirectory() as tmp:
        blob = download(url, Path(tmp) / "archive.zip").read_bytes()
    try:
        files = _zip_files(blob)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{url} is not a zip archive: {err}") from err
    for name, digest in sums.items():
        if name not in files:
            raise ValueError(f"{url} has no file {name}")
        got = hashlib.sha256(files[name]).hexdigest()
        if got != digest:
            raise ValueError(f"checksum mismatch for {name} in {url}: expected sha256 {digest}, got {got}")
    folder.mkdir(parents=True, exist_ok=True)
    for name in sums:
        (folder / name).write_bytes(files[name])
    _write_sums(folder, sums)


def download_sms_spam(folder: Path, url: str | None = None) -> None:
    """The UCI archive's ``SMSSpamCollection``, checked against its SHA-256."""
    download_from_zip(folder, url or SMS_SPAM_URL, SMS_SPAM_SHA256)


def download_sentiment(folder: Path, url: str | None = None) -> None:
    """The UCI archive's three ``*_labelled.txt`` files, each checked against its SHA-256."""
    download_from_zip(folder, url or SENTIMENT_URL, SENTIMENT_SHA256)


def download_cachopo(folder: Path, sums: dict[str, str], url: str | None = None) -> None:
    """Cachopo's plain-text files ``url + name``, each fetched and checked against its SHA-256."""
    for name, digest in sums.items():
        fetch((url or CACHOPO_URL) + name, folder / name, digest)
    _write_sums(folder, sums)


# Registration

_HOLDOUT = (
    f"no upstream test split: the test split is a fixed stratified {HOLDOUT_FRACTION:.0%} holdout (seed {HOLDOUT_SEED})"
)

register_dataset(
    DatasetSpec(
        name="sms_spam",
        modality="text",
        num_classes=2,
        folder="sms_spam",
        upstream=f"{SMS_SPAM_URL} (Almeida et al. 2011), SMSSpamCollection of ham|spam<TAB>text; {_HOLDOUT}",
        reader=read_sms_spam,
        downloader=download_sms_spam,
    )
)

register_dataset(
    DatasetSpec(
        name="reuters_r8",
        modality="text",
        num_classes=8,
        folder="reuters_r8",
        upstream=f"{CACHOPO_URL} (Cachopo 2007), r8-{{train,test}}-all-terms.txt of label<TAB>text",
        reader=lambda folder: read_labelled_text(
            "reuters_r8", folder, "r8-train-all-terms.txt", "r8-test-all-terms.txt"
        ),
        downloader=lambda folder: download_cachopo(folder, R8_SHA256),
    )
)

register_dataset(
    DatasetSpec(
        name="20newsgroups",
        modality="text",
        num_classes=20,
        folder="20newsgroups",
        upstream=f"{CACHOPO_URL} (Cachopo 2007), 20ng-{{train,test}}-no-short.txt of label<TAB>text",
        reader=lambda folder: read_labelled_text(
            "20newsgroups", folder, "20ng-train-no-short.txt", "20ng-test-no-short.txt"
        ),
        downloader=lambda folder: download_cachopo(folder, NG20_SHA256),
    )
)


def _register_sentiment(name: str, domains: tuple[str, ...]) -> None:
    register_dataset(
        DatasetSpec(
            name=name,
            modality="text",
            num_classes=2,
            folder="sentiment_sentences",
            upstream=(
                f"{SENTIMENT_URL} (Kotzias et al. 2015), {', '.join(SENTIMENT_FILES[d] for d in domains)} of "
                f"sentence<TAB>0|1; {_HOLDOUT}, drawn per domain"
            ),
            reader=lambda folder: read_sentiment(name, folder, domains),
            downloader=download_sentiment,
        )
    )


_register_sentiment("sentiment_sentences", SENTIMENT_DOMAINS)
for _domain in SENTIMENT_DOMAINS:
    _register_sentiment(f"sentiment_{_domain}", (_domain,))
