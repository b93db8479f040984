"""Pool workers die with their parent, however it dies, and leave no file behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLES

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
# digits_residual in 2x2 tiles: five blocks; overlap skips the whole-network descent, so the pool starts at once.
COMMAND = ["estimate", str(SAMPLES / "digits_residual.onnx"), "--split", "2x2", "--combine", "overlap", "--jobs", "2"]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG")


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def solving(pid: int) -> bool:
    try:
        return "_scs_" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_solving(tmp_path: Path, start_new_session: bool = False) -> tuple[subprocess.Popen, list[int]]:
    """The estimate, once two workers are in an SCS solve; and its children."""
    out = tmp_path / "out.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "lipcert", *COMMAND, "--format", "json", "--output", str(out)],
        cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=start_new_session,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, "the estimate ended before its workers were solving"
        kids = children(process.pid)
        if sum(solving(k) for k in kids) >= 2:
            return process, kids
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the workers never started solving")


# SIGKILL is the bar (nothing in the parent can run); SIGTERM and SIGINT take the same path as
# test_signals' mid-solve tests plus the pool shutdown, so they run with the slow tests
@pytest.mark.parametrize(
    "signum",
    [
        signal.SIGKILL,
        pytest.param(signal.SIGTERM, marks=pytest.mark.slow),
        pytest.param(signal.SIGINT, marks=pytest.mark.slow),
    ],
    ids=lambda s: s.name,
)
def test_no_worker_outlives_its_parent(tmp_path: Path, signum: int) -> None:
    process, kids = start_solving(tmp_path)
    time.sleep(1.0)
    process.send_signal(signum)
    process.wait(timeout=60)
    time.sleep(10)
    assert [k for k in kids if alive(k)] == []
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_ctrl_c_to_the_process_group_stops_parent_and_workers(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches every process of the group: still one line, exit 130, nobody left."""
    process, kids = start_solving(tmp_path, start_new_session=True)
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=60)
    time.sleep(5)
    assert process.returncode == 130
    assert [k for k in kids if alive(k)] == []
    assert list(tmp_path.iterdir()) == []
