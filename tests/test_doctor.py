"""A broken environment is found at install time (`bench doctor`, the last step of `make install`) and, if it breaks
later, reaches the user as one ``error:`` line naming the package and the fix, exit code 2, nothing written.

The broken native library is real: pillow's package folder copied without the folder of native libraries its
extension links against (``pillow.libs``), put first on ``PYTHONPATH``, so the dynamic loader fails as it does for
a wheel that does not bundle its library.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import PIL
import pytest
import yaml
from conftest import tiny_experiment

from bench import cli, doctor


def test_this_environment_passes_every_check(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"environment ok: {len(doctor.CHECKS)} checks passed" in out


@pytest.fixture(scope="module")
def broken_pillow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a process whose pillow cannot load its native libraries."""
    shadow = tmp_path_factory.mktemp("shadow")
    shutil.copytree(Path(PIL.__file__).parent, shadow / "PIL")
    return {**os.environ, "PYTHONPATH": str(shadow), "NO_COLOR": "1"}


def _bench(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, env=env, timeout=300)


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.slow
def test_the_doctor_names_a_package_whose_native_library_is_missing_once(broken_pillow):
    done = _bench(["doctor"], broken_pillow)
    line = _one_error_line(done.stderr)
    assert done.returncode == 2 and "environment ok" not in done.stdout
    assert "pillow (PIL) cannot load its native code" in line and "cannot open shared object file" in line
    assert "image file (pillow)" in line and "torchvision" in line  # every check it breaks, in one line
    assert "`rm -rf .venv && make install`" in line


@pytest.mark.slow
def test_a_run_in_a_broken_environment_stops_with_one_line_and_writes_nothing(broken_pillow, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(tiny_experiment()))
    results = tmp_path / "results"
    done = _bench(["--results", str(results), "run", str(exp)], broken_pillow)
    line = _one_error_line(done.stderr)
    assert done.returncode == 2 and "pillow (PIL) cannot load its native code" in line, done.stderr
    assert not [p for p in results.rglob("*") if p.is_file()] if results.exists() else True


def test_a_package_that_is_not_installed_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what `import psycopg` meets when it is not installed
    problems = doctor.check(say=lambda line: None)
    assert len(problems) == 1 and problems[0].startswith(f"psycopg is not installed in {sys.prefix}; fails: psycopg;")
