"""`lipcert inspect MODEL`: what lipcert sees in a model, and whether it can certify it."""

from __future__ import annotations

from lipcert.cli.common import ArchOpt, ModelArg, ShapeOpt, TrustOpt, handles_errors, load


@handles_errors
def inspect(
    model: ModelArg, arch: ArchOpt = None, trust_pickle: TrustOpt = False, input_shape: ShapeOpt = None
) -> None:
    """Show the layers lipcert sees, their neuron counts and slope bounds, and whether it can certify it."""
    from lipcert.defaults import DEFAULT_MAX_BLOCK_SIZE
    from lipcert.errors import UnsupportedModelError
    from lipcert.estimate import effective_lmi_size
    from lipcert.report.console import print_inspect

    try:
        loaded = load(model, arch, trust_pickle, input_shape)
    except UnsupportedModelError as err:
        raise UnsupportedModelError(f"not supported: {err}") from None
    size = effective_lmi_size(loaded.network) if loaded.network.layers else 0
    if size <= DEFAULT_MAX_BLOCK_SIZE:
        verdict = f"supported: a full LipSDP ({size}x{size} after input compression) is feasible"
    else:
        verdict = f"supported: the full LipSDP would be {size}x{size}; use --split RxC or the automatic plan"
    print_inspect(loaded, verdict)
