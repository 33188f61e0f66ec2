"""requirements.lock: every package pinned with hashes, consistent with pyproject.toml, and what `make install` made.

`make lock` writes the lock; `make install` installs exactly its set. These checks read files and installed metadata,
nothing is fetched: a pyproject.toml edited without `make lock` fails here, not on someone else's machine.
"""

from __future__ import annotations

import re
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _lock() -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes) of every requirement in the lock."""
    pins: dict[str, tuple[Version, int]] = {}
    name = None
    for line in LOCK.read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match[1])
            assert name not in pins, f"{name} is pinned twice in requirements.lock"
            pins[name] = (Version(match[2]), 0)
        elif name and line.strip().startswith("--hash=sha256:"):
            pins[name] = (pins[name][0], pins[name][1] + 1)
        elif line.strip() and not line.lstrip().startswith("#"):
            pytest.fail(f"requirements.lock: not a pin, a hash or a comment: {line!r}")
    return pins


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def _makefile_list(variable: str) -> list[str]:
    """The words of a `VARIABLE := ...` line of the Makefile, continuation lines included."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = re.search(rf"^{variable}\s*:=(.*)$", text, re.M)
    assert line, f"Makefile has no {variable} :="
    return line[1].split("#")[0].split()


def test_every_package_is_pinned_with_hashes():
    pins = _lock()
    assert len(pins) > 100
    unhashed = sorted(name for name, (_, hashes) in pins.items() if hashes == 0)
    assert not unhashed, f"pinned without a hash: {unhashed}"


def test_the_lock_satisfies_pyproject():
    """Each dependency of pyproject.toml (and the dev extra) has a pin that its specifier allows: else `make lock`."""
    pins = _lock()
    for req in _pyproject_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is in pyproject.toml but not in requirements.lock: run `make lock`"
        version = pins[name][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, pyproject.toml wants {req}: run `make lock`"
        )


def test_the_torch_trio_is_the_pinned_build():
    pins = _lock()
    for req in _pyproject_requirements():
        if req.name in ("torch", "torchvision", "torchaudio"):
            assert str(req.specifier).startswith("=="), f"{req} must stay pinned exactly"
            assert str(pins[req.name][0]) == str(req.specifier)[2:]


def test_the_no_deps_packages_are_locked():
    """The packages the Makefile installs without their dependencies are in the lock at the Makefile's versions."""
    pins = _lock()
    nodeps = _makefile_list("NODEPS")
    assert "resemblyzer==0.1.4" in nodeps and len(nodeps) >= 7
    for spec in nodeps:
        name, version = spec.split("==")
        assert pins.get(canonicalize_name(name), (None,))[0] == Version(version), f"{spec} is not in requirements.lock"


@pytest.mark.skipif(not (Path(sys.prefix) / ".installed").exists(), reason="not an environment `make install` made")
def test_the_environment_is_exactly_the_lock():
    """`make install` syncs the venv to the lock: nothing more, nothing less, no other version (the project aside)."""
    pins = {name: version for name, (version, _) in _lock().items()}
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})  # not plugins on sys.path
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions(path=site)}
    installed.pop("transferbench", None)
    missing = sorted(set(pins) - set(installed))
    extra = sorted(set(installed) - set(pins))
    differ = sorted(
        f"{n}: {installed[n]} (lock {pins[n]})" for n in set(pins) & set(installed) if installed[n] != pins[n]
    )
    assert not (missing or extra or differ), f"run `make install`: missing {missing}, extra {extra}, differing {differ}"
