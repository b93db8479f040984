"""SIGINT and SIGTERM stop lipcert mid-solve: exit 130/143, one line on stderr, no output, nothing cached."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lipcert.errors import EXIT_SIGINT, EXIT_SIGTERM, Interrupted
from lipcert.sdp import solve as solve_module
from tests.conftest import REPO, SAMPLES

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def lipcert(*args: str, **kwargs) -> subprocess.Popen:  # noqa: ANN003
    command = [sys.executable, "-m", "lipcert", *args]
    return subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def wait_for_scs(process: subprocess.Popen, timeout: float = 240) -> None:
    """SCS is imported only when the first solve starts: its library in the process's maps says so."""
    deadline = time.monotonic() + timeout
    maps = Path(f"/proc/{process.pid}/maps")
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if "_scs_" in maps.read_text():
            time.sleep(1.5)  # well inside the solve (digits_residual's takes a minute or more)
            return
        time.sleep(0.1)
    raise AssertionError("no SCS solve began")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, EXIT_SIGINT), (signal.SIGTERM, EXIT_SIGTERM)])
def test_a_signal_mid_solve_stops_with_its_code_and_writes_nothing(tmp_path: Path, signum: int, code: int) -> None:
    out = tmp_path / "out.json"
    model = str(SAMPLES / "digits_residual.onnx")
    process = lipcert("estimate", model, "--format", "json", "--output", str(out))
    wait_for_scs(process)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert stdout == b""  # no partial JSON, no 'Failure:interrupted' from SCS
    lines = stderr.decode().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0], lines
    assert not out.exists() and not list(tmp_path.iterdir())  # no output, no temporary file


def test_an_interrupted_solve_is_raised_never_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """SCS catches SIGINT and returns 'interrupted': lipcert raises it, it is never an outcome."""
    from lipcert.sdp.certify import certify_block
    from tests.nets import random_net

    info = {"status_val": -5, "status": "interrupted", "iter": 3}
    assert solve_module.SCS.status(info) == solve_module.INTERRUPTED

    def interrupted(*args, **kwargs) -> dict:  # noqa: ANN002, ANN003
        print("Failure:interrupted")  # as SCS does, on stdout
        return {"x": [], "y": [], "s": [], "info": info}

    monkeypatch.setattr(solve_module.Scs, "solve", interrupted)
    with pytest.raises(Interrupted) as raised:
        certify_block(random_net(0))
    assert raised.value.exit_code == EXIT_SIGINT


def test_solver_prints_never_reach_stdout(capfd: pytest.CaptureFixture) -> None:
    from lipcert.quiet import solver_stdout

    print("before", flush=True)
    with solver_stdout():
        print("python print")
        os.write(1, b"c print\n")
    with solver_stdout(verbose=True):
        print("verbose print")
    print("after")
    captured = capfd.readouterr()
    assert captured.out == "before\nafter\n"
    assert "verbose print" in captured.err and "c print" not in captured.err


def test_interrupted_survives_the_trip_back_from_a_worker() -> None:
    import pickle

    again = pickle.loads(pickle.dumps(Interrupted(EXIT_SIGTERM)))
    assert isinstance(again, KeyboardInterrupt) and again.exit_code == EXIT_SIGTERM
    assert not isinstance(again, Exception)  # no `except Exception` may turn it into a result


def test_stdout_is_exactly_the_json(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lipcert", "estimate", str(SAMPLES / "digits_chain.onnx"), "--format", "json",
         "--max-iters", "50"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bound"] > 0
