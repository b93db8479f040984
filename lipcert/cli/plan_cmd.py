"""`lipcert plan MODEL --max-block-size N`: write the automatic (or --split) partition plan as YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lipcert.cli.common import (
    ArchOpt,
    ChordalOpt,
    CombineOpt,
    MethodOpt,
    ModelArg,
    ShapeOpt,
    TrustOpt,
    check_output,
    estimate_options,
    handles_errors,
)  # fmt: skip
from lipcert.cli.output_node import OutputNodeOpt, load_up_to
from lipcert.defaults import DEFAULT_MAX_BLOCK_SIZE

PlanBlockOpt = Annotated[
    int, typer.Option(help="Largest LMI side of any block of the plan; pass the same value to estimate --plan.")
]
PlanOutputOpt = Annotated[
    Path | None,
    typer.Option(help="Write the YAML plan to this file (atomically) instead of stdout.", show_default="stdout"),
]
PlanSplitOpt = Annotated[
    str | None,
    typer.Option(help="Write the --split RxC plan instead of the automatic one.", show_default="the automatic plan"),
]


@handles_errors
def plan(
    model: ModelArg,
    max_block_size: PlanBlockOpt = DEFAULT_MAX_BLOCK_SIZE,
    split: PlanSplitOpt = None,
    method: MethodOpt = None,
    combine: CombineOpt = None,
    chordal: ChordalOpt = True,
    output: PlanOutputOpt = None,
    arch: ArchOpt = None,
    trust_pickle: TrustOpt = False,
    input_shape: ShapeOpt = None,
    output_node: OutputNodeOpt = None,
) -> None:
    """Write the partition plan estimate would use (the automatic one, or --split's) as YAML."""
    if max_block_size < 1:
        raise typer.BadParameter(f"{max_block_size}: the budget must be at least 1", param_hint="--max-block-size")
    check_output(output)  # first: before the solver's modules are even imported
    options = estimate_options(method, split, None, combine, {}, max_block_size, 1, None, chordal)
    loaded = load_up_to(model, arch, trust_pickle, input_shape, output_node)
    text = plan_text(loaded, options)
    if output is None:
        typer.echo(text, nl=False)
    else:
        from lipcert.report.files import write_atomic

        write_atomic(output, text)


def plan_text(loaded, options) -> str:  # noqa: ANN001 - LoadedModel, EstimateOptions (imported lazily)
    """The YAML plan with a header naming the model, its hash and the budget; refused when a block is over it."""
    from lipcert.errors import ModelTooLargeError
    from lipcert.estimate import choose_plan
    from lipcert.partition.plan import plan_to_yaml

    net = loaded.network
    budget = options.max_block_size
    chosen = choose_plan(net, options)
    largest = _largest_blocks(net, chosen, budget)
    how = f"--split {options.split[0]}x{options.split[1]}" if options.split else "the automatic plan"
    if max(largest) > budget:
        over = ", ".join(f"{g.label} {size}" for g, size in zip(chosen.groups, largest) if size > budget)
        smallest = _smallest_budget(net, options, budget + 1, max(largest))
        fix = f"--max-block-size {max(largest)} or more"
        if smallest is not None:
            fix = f"--max-block-size {smallest} or more (the smallest budget with a plan that fits)"
        if options.split:
            fix += ", a finer --split, or no --split (the automatic plan)"
        raise ModelTooLargeError(
            f"{how} has blocks above --max-block-size {budget} (largest block of each group over it: {over}); use {fix}"
        )
    header = [
        f"# Partition plan written by `lipcert plan`: {how}, max_block_size {budget}.",
        f"# model:  {loaded.path}",
        f"# sha256: {loaded.sha256}",
        f"# {len(chosen.groups)} group(s), {sum(g.n_tiles for g in chosen.groups)} tile(s), "
        f"largest block {max(largest)} (LMI side, or largest chordal clique); each group's comment gives its own.",
        f"# Certify with: lipcert estimate MODEL --plan FILE --max-block-size {budget}",
    ]
    return "\n".join(header) + "\n" + plan_to_yaml(chosen, net)


def _largest_blocks(net, plan, budget: int) -> list[int]:  # noqa: ANN001 - Network, Plan
    """Per group, the largest PSD constraint as solved (a one-block group over budget: its largest clique)."""
    from lipcert.estimate import solved_block_sizes

    return solved_block_sizes(net, plan, budget)


def _smallest_budget(net, options, lo: int, hi: int) -> int | None:  # noqa: ANN001 - Network, EstimateOptions
    """The smallest budget in lo..hi whose plan fits it, by bisection (planning takes well under a second).

    hi is the largest block of the plan chosen for a smaller budget. Bisection assumes that a budget
    that fits keeps fitting when raised; None when even the plan chosen for hi does not fit.
    """
    import dataclasses

    from lipcert.estimate import choose_plan

    def fits(budget: int) -> bool:
        plan = choose_plan(net, dataclasses.replace(options, max_block_size=budget))
        return max(_largest_blocks(net, plan, budget)) <= budget

    if not fits(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi
