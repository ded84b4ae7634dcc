"""Running the ``dlapps`` command as a user would: a subprocess with its own environment."""

import os
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
