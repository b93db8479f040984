"""Sub-networks of the form: some inputs, some neurons, some outputs, everything else dropped."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from lipcert.network.form import Layer, Network


def subnetwork(net: Network, inputs: np.ndarray, neurons: np.ndarray, outputs: np.ndarray) -> Network:
    """The network reading x[inputs] through the neurons `neurons` (ascending) into y[outputs].

    It computes y[outputs] exactly when `neurons` holds every neuron those outputs depend on and
    `inputs` every pixel those neurons and outputs read (a receptive cone, partition.tiles); the
    matrices are restricted, nothing is recomputed. Inputs and outputs become flat.
    """
    A, B, C, D = (sp.csr_matrix(m) for m in (net.A, net.B, net.C, net.D))
    return Network(
        A=A[neurons][:, inputs],
        B=B[neurons][:, neurons],
        C=C[outputs][:, inputs],
        D=D[outputs][:, neurons],
        bias_v=np.asarray(net.bias_v)[neurons],
        bias_y=np.asarray(net.bias_y)[outputs],
        layers=restrict_layers(net.layers, neurons),
        input_shape=(int(np.asarray(inputs).size),),
        output_shape=(int(np.asarray(outputs).size),),
    )


def restrict_layers(layers: tuple[Layer, ...], neurons: np.ndarray) -> tuple[Layer, ...]:
    """Each layer's share of `neurons` (ascending), re-indexed, with its per-neuron slopes (PReLU) sliced;
    layers with none are dropped."""
    kept = []
    for layer in layers:
        lo, hi = (int(i) for i in np.searchsorted(neurons, [layer.start, layer.stop]))
        if hi > lo:
            local = np.asarray(neurons[lo:hi]) - layer.start
            per_neuron = {
                name: np.asarray(values)[local]
                for name in ("alphas", "betas", "params")
                if (values := getattr(layer, name)) is not None and len(values) == layer.size
            }
            kept.append(dataclasses.replace(layer, start=lo, stop=hi, shape=(hi - lo,), **per_neuron))
    return tuple(kept)
