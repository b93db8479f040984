"""Every default and limit lipcert decides with, in one place, each with the measurement behind it.

Plain values only (no numpy, no solver imports), so that reading options or a plan stays cheap.
Constants that are part of a proof (rounding margins, repair factors) stay beside the proof.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lipcert.vocabulary import Combine, Method

# --------------------------------------------------------------------------- what the user gets by default

DEFAULT_METHOD = Method.NEURON
DEFAULT_COMBINE = Combine.AUTO
# LMI side per block (--max-block-size): an SCS solve of seconds, not minutes, on 2 cores.
DEFAULT_MAX_BLOCK_SIZE = 600


@dataclass(frozen=True)
class SolverSettings:
    """SCS settings, honoured by every SDP lipcert solves (single blocks, chordal cliques, coupled tiles).

    One `eps` sets both eps_abs and eps_rel. certify_block starts at `eps` and tightens it ×0.1,
    warm-started, down to `eps_min`, until the verified bound is within `target_gap` (relative) of
    SCS's objective; that test is only trusted once eps ≤ `trust_eps` (measured: at eps=1e-3 SCS's
    objective was off by up to 10% in ρ, at 1e-4 by < 0.5%). `polish_steps` gradient steps on the
    multipliers precede each verification. `time_limit_secs` bounds one block's whole continuation.

    Defaults from benchmarks/bench_lipsdp.py ("verified bound per second"): start at 1e-3 with warm
    continuation and SCS scale 0.01 certified the benchmark blocks within 0.05% of the best verified
    value in 35 s in all, against 60 s for start 1e-3 with SCS's default scale 0.1, 52 s for a start
    at 1e-4, and 3.4% worst excess for a single solve at 1e-3. A warm start at a tighter eps cost
    fewer iterations than a cold one there, except that cold Layer solves on one 332-side LMI stalled
    for thousands.
    """

    eps: float = 1e-3
    max_iters: int = 20_000
    time_limit_secs: float = 0.0  # 0: none
    warm_start: bool = True
    verbose: bool = False
    eps_min: float = 1e-6
    trust_eps: float = 1e-4
    target_gap: float = 1e-3
    polish_steps: int = 10
    scale: float = 0.01  # SCS's initial primal/dual balance (adapted during the solve)

    def key(self) -> dict[str, Any]:
        """What a result depends on (job keys hash it)."""
        return asdict(self)


# A plan's `solver:` section (YAML keys) and its defaults: the same values as SolverSettings.
DEFAULT_SOLVER: dict[str, Any] = {
    "eps": SolverSettings.eps,
    "max_iters": SolverSettings.max_iters,
    "time_limit": None,
    "warm_start": SolverSettings.warm_start,
}

# --------------------------------------------------------------------------- sizes lipcert can afford

# Up to this LMI side the float64 proof (and ρ*) use one dense Cholesky (n² floats, ~n³/3 flops: at
# 4000, 128 MB and seconds); above it, a sparse LDLᵀ of the lifted LMI (lipcert.sdp.sparse_psd), no
# dense n×n anywhere. Dense results below it are unchanged from before the sparse path existed.
DENSE_LIMIT = 4000
# The largest LMI side lipcert proves in one piece (whole-network certificates, chordal solves).
# Measured with the sparse proof: verivital's 24 112 in 0.25 s of factorisation, 3.4 GiB peak (most
# of it the model); oval21 cifar_deep's 6756 in 1.4 s.
VERIFY_LIMIT = 30_000
# The largest full LMI the chordal path considers (as before the sparse proof): its pattern is
# formed with [C D]ᵀ[C D], dense over every neuron that a dense output layer reads (verivital's
# 23 328 neurons behind one Gemm: 22 GiB), and its cliques only pay on small convolutions anyway.
CHORDAL_LIMIT = DENSE_LIMIT
# The chain recursion (ECLipsE-style start) forms dense layer-sized matrices: not above this width,
# so that no dense matrix above DENSE_LIMIT is formed anywhere on the whole-network path.
CHAIN_WIDTH = DENSE_LIMIT
# `--combine auto` couples a group's tiles (and a chordal solve is accepted) when its one SDP costs at
# most this many SCS iterations of blocks at the size budget (an iteration is cubic in each PSD
# block's side). Above it, tiles are solved as independent blocks and combined by overlap: on the
# CIFAR nets the coupled SDP of 64 tiles of ~440 took over 50 min; eran 9x200 (LMI 2394) decomposes
# into 7 cliques of up to 600, and its chordal solve had not finished after 11 minutes, where the
# product of its groups takes 46 s.
COUPLED_BUDGET = 4.0
# Below this side a single PSD constraint is solved in seconds: not worth a chordal decomposition.
CHORDAL_MIN = 256
# Cliques are merged up to this side (or the budget, if smaller): on digits_chain (side 384), 100 gave
# 7 cliques and 150 gave 4, both solved in 6.5 s against 17 s for one constraint, while unmerged (289
# cliques, largest 82) SCS needed 56 s at eps 1e-3 and stayed 8% loose.
MERGE_TARGET = 150
# Decompose only when one SCS iteration gets at least this much cheaper (Σ|C|³ against n³).
MIN_GAIN = 2.0
# No clique above this side. Measured: convolutional nets decompose into cliques of 82-224 and solve
# 2-8x faster than one constraint; the dense MNIST nets give cliques of 400-512 (every pixel with a
# whole layer) and their chordal solves had not finished after 5 (mnistfc 256x2) and 11 (eran 9x200)
# minutes, where their automatic plans take under a minute.
MAX_CLIQUE = 256
# At most this many slack variables: each is a column of SCS's constraint matrix, touching every PSD
# cone it joins (unmerged pixel cliques of a dense layer once needed millions, and the process ran
# out of 24 GiB).
MAX_SLACKS = 1_000_000

# --------------------------------------------------------------------------- whole-network points

# The whole estimate's time budget (--time-limit), seconds. Work is ordered cheapest first (naive,
# the whole-network descent, then block SDPs while time is left); when the budget runs out, what is
# proven so far is the bound. A safety stop: with it the default finishes on every shared model.
DEFAULT_TIME_LIMIT = 300.0
# Per-neuron descent steps on ρ*(λ) for a whole-network certificate (a fixed count, so the bound is
# reproducible; the budget only stops it early). Measured (mnistfc 256x2, from the chain point
# 453.6): 128 steps reached 314.8 against LipSDP-Neuron's 312.64.
DESCENT_ITERATIONS = 200
# Descent steps per certificate when one run certifies many (e.g. --pairs all: 45), at the least.
MIN_DESCENT_ITERATIONS = 20
# Of the time budget, the share the first whole-network descent may use, and the share kept back
# for the final descent from the solved blocks' multipliers and its proof.
FIRST_DESCENT_SHARE = 0.45
FINAL_RESERVE = 0.2
# ... and, when the first descent goes on because no block can beat it, the share kept for what
# follows its proof: on oval21 cifar_wide (budget 300 s) the groups' naive bounds for the report
# took 10 s.
PROOF_RESERVE = 0.05
# A descent stops while this many of its own mean evaluations are left in its budget, for the proof
# of its point (and of its start, should the point fail): measured on cifar10 resnet_2b, one sparse
# ρ* evaluation 2.3 s, verify_multipliers 4.6 s. With a fixed share of the budget instead, the
# proof came after it on a loaded machine (6 s per evaluation: 313 s of a 300 s budget).
PROOF_EVALUATIONS = 4.0

# The layer-scale search of the chain point: passes over the layers (a fixed count, so the bound is
# reproducible; 8 stopped 1.01x above LipSDP-Layer on the test chain, 12 within 1%).
MAX_SWEEPS = 12
# ... and a safety stop per certificate, should each ρ* be slow (shared by the certificates of one
# run, e.g. 45 class pairs).
DESCENT_SECONDS = 120.0

# --------------------------------------------------------------------------- linear algebra and loading

# Under this LMI side, dense verification runs with one BLAS thread: with the 2 cores shared, a
# multi-threaded OpenBLAS Cholesky of side 200-800 took 0.1-1 s instead of ~10 ms.
SINGLE_THREAD_BELOW = 2000
# Beyond this side a dense Gram matrix is too costly here: operator norms use a Hölder bound instead.
DENSE_GRAM_LIMIT = 8192
# Beyond this many neurons the sparse form alone needs several GiB.
MAX_NEURONS = 2_000_000
