"""From a loaded model to a certificate: choose the blocks, certify each, combine."""

from __future__ import annotations

import time
from dataclasses import dataclass

from lipcert.errors import BadInputError, ModelTooLargeError
from lipcert.load import LoadedModel
from lipcert.naive import naive_bound
from lipcert.network.form import Network
from lipcert.result import BlockResult, Certificate
from lipcert.sdp.solve import SolverSettings

METHODS = ("naive", "lipsdp-neuron", "lipsdp-layer")
COMBINE_MODES = ("paper", "overlap", "pou", "coupled")
DEFAULT_MAX_BLOCK = 1500  # an LMI side whose SCS solve still takes minutes, not hours, here


@dataclass(frozen=True)
class EstimateOptions:
    method: str = "lipsdp-neuron"
    split: tuple[int, int] | None = None
    combine: str = "coupled"
    settings: SolverSettings = SolverSettings()
    max_block_size: int = DEFAULT_MAX_BLOCK


def estimate(model: LoadedModel, options: EstimateOptions) -> Certificate:
    if options.method not in METHODS:
        raise BadInputError(f"--method '{options.method}' is not one of {', '.join(METHODS)}")
    start = time.perf_counter()
    if options.method == "naive":
        block = _naive_block(model.network)
        plan = "whole network (product of norms)"
    else:
        block = _full_lipsdp(model.network, options)
        plan = "1x1 (full LipSDP)"
    return Certificate(
        model=str(model.path),
        sha256=model.sha256,
        bound=block.bound,
        method=options.method,
        combine=None,
        plan=plan,
        blocks=(block,),
        seconds=time.perf_counter() - start,
        input_shape=model.network.input_shape,
        output_shape=model.network.output_shape,
    )


def _naive_block(net: Network) -> BlockResult:
    start = time.perf_counter()
    bound = naive_bound(net)
    return BlockResult(0, 0, net.lmi_size, bound, time.perf_counter() - start, "naive")


def effective_lmi_size(net: Network) -> int:
    """The LMI side SCS sees: inputs compress to at most the rows that read them (MATH.md §2)."""
    readers = net.n_w + net.n_y
    return min(net.n_x, readers) + net.n_w


def _full_lipsdp(net: Network, options: EstimateOptions) -> BlockResult:
    size = effective_lmi_size(net)
    if size > options.max_block_size:
        raise ModelTooLargeError(
            f"the full LipSDP matrix would be {size}x{size}, above the block limit of "
            f"{options.max_block_size} (--max-block-size); certify in parts with --split, "
            "e.g. --split 2x2, or leave out --split for the automatic plan"
        )
    from lipcert.sdp.certify import certify_block

    method = options.method.removeprefix("lipsdp-")
    cert = certify_block(net, method=method, settings=options.settings)
    return BlockResult(
        0, 0, cert.solved_size, cert.bound, cert.seconds, cert.source, raw_objective=cert.raw_bound
    )
