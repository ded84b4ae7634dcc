"""Running the ``dlapps`` command as a user would: a subprocess with its own environment."""

import os
import shutil
import subprocess
import sys
from pathlib import Path


def dlapps(*args: str, data_root: Path | None = None, **variables: str) -> subprocess.CompletedProcess:
    """``dlapps *args`` in a subprocess; ``variables`` are added to its environment."""
    env = {k: v for k, v in os.environ.items() if k != "DLAPPS_DATA"} | variables
    if data_root is not None:
        env["DLAPPS_DATA"] = str(data_root)
    return subprocess.run([sys.executable, "-m", "dlapps", *args], capture_output=True, text=True, env=env, timeout=600)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlapps: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def chromium() -> str:
    """Debian's Chromium, for tests that open an HTML report: required under CI (``CI`` set), else they skip."""
    import pytest

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium must be installed in CI (see .ci/run)")
        pytest.skip("chromium is not installed")
    return executable
