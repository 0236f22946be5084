"""In CI (INFERIA_REQUIRE_ALL=1) any skipped test fails the run; locally it stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from django.conf import settings

SAMPLE = textwrap.dedent(
    """
    import pytest

    @pytest.mark.skip(reason="marker skip")
    def test_marker():
        pass

    def test_imperative():
        pytest.skip("imperative skip")

    @pytest.mark.xfail(reason="known bug", strict=True)
    def test_expected_failure():
        assert False

    def test_passes():
        pass
    """
)


def _run_sample(tmp_path, require_all: bool) -> subprocess.CompletedProcess:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {key: value for key, value in os.environ.items() if key != "INFERIA_REQUIRE_ALL"}
    if require_all:
        env["INFERIA_REQUIRE_ALL"] = "1"
    env["PYTHONPATH"] = str(settings.BASE_DIR)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.require_all",
            "-p",
            "no:django",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rA",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            str(tmp_path / "test_sample.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_skips_are_skips_locally(tmp_path):
    result = _run_sample(tmp_path, require_all=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 2 skipped, 1 xfailed" in result.stdout


def test_every_skip_fails_in_require_all_mode(tmp_path):
    result = _run_sample(tmp_path, require_all=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ERROR test_sample.py::test_marker" in result.stdout
    assert "FAILED test_sample.py::test_imperative" in result.stdout
    assert "requires every test to run: Skipped: marker skip" in result.stdout
    assert "XFAIL test_sample.py::test_expected_failure" in result.stdout
    assert "PASSED test_sample.py::test_passes" in result.stdout
