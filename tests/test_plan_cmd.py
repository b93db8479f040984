"""`lipcert plan`: the automatic (or --split) plan as YAML, read back by `estimate --plan` to the same bound."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lipcert.cli import app
from lipcert.errors import EXIT_BAD_INPUT, EXIT_UNSUPPORTED, EXIT_USAGE
from lipcert.partition.plan import load_plan, plan_block_sizes
from tests.conftest import SAMPLES, load_cached

runner = CliRunner()
CHAIN = SAMPLES / "digits_chain.onnx"
RESIDUAL = SAMPLES / "digits_residual.onnx"


def run(*args: str | Path):  # noqa: ANN201 - click's Result
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return result


def write_plan(tmp_path: Path, model: Path, *args: str) -> Path:
    out = tmp_path / "plans" / "plan.yaml"  # the folder does not exist yet: --output creates it
    result = run("plan", model, *args, "--output", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    return out


def largest_blocks(model: Path, plan_path: Path, budget: int | None = None) -> list[int]:
    """Per group, the largest PSD constraint: a block, or (budget given) the chordal cliques of one over it."""
    from lipcert.estimate import solved_block_sizes

    net = load_cached(str(model)).network
    plan = load_plan(plan_path, net)
    if budget is not None:
        return solved_block_sizes(net, plan, budget)
    return [int(max(sizes)) for sizes in plan_block_sizes(net, plan)]


def bound(tmp_path: Path, name: str, *args: str | Path) -> float:
    out = tmp_path / f"{name}.json"
    result = run("estimate", *args, "--format", "json", "--output", out, "--jobs", "1")
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text(encoding="utf-8"))["bound"]


def test_written_plan_gives_the_same_bound_as_estimate_without_a_plan(tmp_path: Path) -> None:
    budget = "50"  # small tiles: 16 coupled blocks of <= 44, a few seconds
    path = write_plan(tmp_path, CHAIN, "--max-block-size", budget)
    assert [p.name for p in path.parent.iterdir()] == ["plan.yaml"]  # no temporary file left behind
    assert max(largest_blocks(CHAIN, path)) <= 50
    settings = ("--max-block-size", budget, "--eps", "0.01")
    automatic = bound(tmp_path, "auto", CHAIN, *settings)
    planned = bound(tmp_path, "planned", CHAIN, "--plan", path, *settings)
    assert planned == automatic


def test_header_names_the_model_hash_and_budget(tmp_path: Path) -> None:
    path = write_plan(tmp_path, CHAIN, "--max-block-size", "70")
    text = path.read_text(encoding="utf-8")
    loaded = load_cached(str(CHAIN))
    header = [line for line in text.splitlines() if line.startswith("#")][:5]
    assert f"# model:  {CHAIN}" in header
    assert f"# sha256: {loaded.sha256}" in header
    assert "max_block_size 70" in header[0] and "automatic plan" in header[0]
    sizes = largest_blocks(CHAIN, path)
    assert f"2 group(s), 17 tile(s), largest block {max(sizes)}" in header[3]
    # per-group comments come from plan_to_yaml, once each
    assert text.count(f"16 tile(s), largest block {sizes[0]}") == 1
    assert yaml.safe_load(text)["groups"][0] == {"layers": ["relu1_relu", "relu2_relu"], "grid": "4x4"}


def test_a_budget_the_chordal_cliques_fit_plans_the_whole_network(tmp_path: Path) -> None:
    from lipcert.sdp.chordal import chordal_tree

    path = write_plan(tmp_path, CHAIN, "--max-block-size", "150")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert data["groups"] == [{"layers": ["relu1_relu", "relu2_relu"], "parts": 1}]
    clique = largest_blocks(CHAIN, path, 150)[0]
    assert chordal_tree(load_cached(str(CHAIN)).network).largest <= clique <= 150 < largest_blocks(CHAIN, path)[0]
    assert f"1 group(s), 1 tile(s), largest block {clique} (LMI side, or largest chordal clique)" in path.read_text()


def test_no_chordal_plans_by_the_lmi_alone(tmp_path: Path) -> None:
    # Without chordal solves the whole network (LMI 384) does not fit 150: the plan cuts it.
    path = write_plan(tmp_path, CHAIN, "--max-block-size", "150", "--no-chordal")
    assert max(largest_blocks(CHAIN, path)) <= 150
    assert len(yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]) > 1


def test_stdout_without_output_is_the_same_yaml(tmp_path: Path) -> None:
    path = write_plan(tmp_path, CHAIN, "--max-block-size", "100")
    result = run("plan", CHAIN, "--max-block-size", "100")
    assert result.exit_code == 0, result.output
    assert result.stdout == path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("model", "budget", "extra"),
    [
        (CHAIN, 40, ()),
        (CHAIN, 100, ()),
        (CHAIN, 600, ()),
        (RESIDUAL, 70, ()),
        (RESIDUAL, 150, ()),
        (CHAIN, 600, ("--split", "2x2")),
        (CHAIN, 600, ("--split", "1x1")),
        (RESIDUAL, 600, ("--split", "4x4", "--combine", "paper", "--method", "lipsdp-layer")),
    ],
)
def test_every_block_is_within_the_budget(tmp_path: Path, model: Path, budget: int, extra: tuple[str, ...]) -> None:
    path = write_plan(tmp_path, model, "--max-block-size", str(budget), *extra)
    assert max(largest_blocks(model, path, budget)) <= budget
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if "--combine" in extra:
        assert (data["combine"], data["method"]) == ("paper", "lipsdp-layer")
    if extra[:2] == ("--split", "1x1"):
        assert data["groups"] == [{"layers": ["relu1_relu", "relu2_relu"], "parts": 1}]  # the full LipSDP


def test_too_small_budget_is_refused_with_the_smallest_that_fits(tmp_path: Path) -> None:
    out = tmp_path / "plan.yaml"
    result = run("plan", RESIDUAL, "--max-block-size", "10", "--output", out)
    assert result.exit_code == EXIT_UNSUPPORTED  # 5: a model too large for the requested block size
    assert "error: the automatic plan has blocks above --max-block-size 10" in result.output
    assert "'block_relu_relu'..'relu2_relu' 384" in result.output  # the group and its size
    assert "use --max-block-size 70 or more" in result.output
    assert not out.exists()
    assert run("plan", RESIDUAL, "--max-block-size", "69").exit_code == EXIT_UNSUPPORTED
    assert run("plan", RESIDUAL, "--max-block-size", "70").exit_code == 0


def test_too_small_budget_for_a_split(tmp_path: Path) -> None:
    from lipcert.sdp.chordal import chordal_tree

    clique = chordal_tree(load_cached(str(CHAIN)).network).largest  # no budget below this can fit
    result = run("plan", CHAIN, "--split", "1x1", "--max-block-size", str(clique - 1))
    assert result.exit_code == EXIT_UNSUPPORTED
    assert f"--split 1x1 has blocks above --max-block-size {clique - 1}" in result.output
    assert "a finer --split" in result.output
    found = re.search(r"use --max-block-size (\d+) or more \(the smallest budget", result.output)
    assert found is not None, result.output
    smallest = int(found.group(1))  # the full LMI (384) as one block, or its cliques from some budget on
    assert clique <= smallest <= 384
    assert run("plan", CHAIN, "--split", "1x1", "--max-block-size", str(smallest)).exit_code == 0
    assert run("plan", CHAIN, "--split", "1x1", "--max-block-size", str(smallest - 1)).exit_code == EXIT_UNSUPPORTED


def test_missing_model_exits_4(tmp_path: Path) -> None:
    result = run("plan", tmp_path / "nope.onnx", "--output", tmp_path / "plan.yaml")
    assert result.exit_code == EXIT_BAD_INPUT
    assert "nope.onnx: no such file" in result.output
    assert not (tmp_path / "plan.yaml").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--max-block-size", "0"), EXIT_USAGE, "the budget must be at least 1"),
        (("--split", "0x2"), EXIT_USAGE, "rows and columns must be at least 1"),
        (("--split", "9x2"), EXIT_BAD_INPUT, "--split 9x2 does not fit the output 8x8"),
    ],
)
def test_bad_options(args: tuple[str, ...], code: int, message: str) -> None:
    result = run("plan", CHAIN, *args)
    assert result.exit_code == code
    assert message in result.output
