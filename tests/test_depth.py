"""Depth cuts: which cuts are valid, and groups that compose back to the network exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from convnets import INPUT, Conv, random_convnet

from lipcert.network.form import Network
from lipcert.partition.depth import depth_group, output_map, output_map_refusal, valid_cuts

HEAD = Conv(2)


def _chain(head: Conv | None = HEAD) -> Network:
    stages = [Conv(3, 3, 2, 1), Conv(3, 3, 1, 2, 2, 3, "tanh"), Conv(4, 2, 1, 0, 1, 1, "leaky_relu", 0.2), Conv(2)]
    return random_convnet((2, 9, 9), stages, head, seed=1).form


def _residual() -> Network:
    """Stage 2 adds stage 0's output: the branch jumps over the cut before stage 2."""
    stages = [Conv(3), Conv(3), Conv(3, skip_from=0), Conv(3, skip_from=2), Conv(2)]
    return random_convnet((3, 6, 6), stages, Conv(2), seed=2).form


def _compose(net: Network, cuts: list[int], x: np.ndarray, output_group: bool = False) -> np.ndarray:
    """The groups between the cuts applied in turn; with output_group, y is a group of its own."""
    bounds = [0, *cuts, len(net.layers)]
    h = x
    for first, stop in zip(bounds[:-1], bounds[1:]):
        h = depth_group(net, first, stop - 1, to_activations=output_group).forward(h)
    return output_map(net).forward(h) if output_group else h


def test_chain_can_be_cut_anywhere() -> None:
    net = _chain()
    assert valid_cuts(net) == [1, 2, 3]


def test_residual_branch_blocks_the_cuts_it_crosses() -> None:
    # stage 2 reads stage 0 (cut 2 crosses it); stage 3 reads stage 2 (fine for cut 3)
    assert valid_cuts(_residual()) == [1, 3, 4]


def test_reading_the_input_late_blocks_every_cut_before() -> None:
    net = random_convnet((2, 5, 5), [Conv(2), Conv(2), Conv(2, skip_from=INPUT)], None).form
    assert valid_cuts(net) == []


def test_output_reading_x_blocks_every_cut() -> None:
    net = _chain()
    C = sp.csr_matrix(np.eye(net.n_y, net.n_x))
    assert valid_cuts(dataclasses.replace(net, C=C)) == []


@pytest.mark.parametrize("cuts", [[1], [2], [3], [1, 2, 3], [1, 3]])
def test_groups_compose_to_the_network(cuts: list[int]) -> None:
    net = _chain()
    x = np.random.default_rng(0).standard_normal((5, net.n_x))
    np.testing.assert_allclose(_compose(net, cuts, x), net.forward(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cuts", [[1], [3, 4], [1, 3, 4]])
def test_residual_groups_compose_to_the_network(cuts: list[int]) -> None:
    net = _residual()
    x = np.random.default_rng(1).standard_normal((4, net.n_x))
    np.testing.assert_allclose(_compose(net, cuts, x), net.forward(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("make", "cuts"), [(_chain, []), (_chain, [2]), (_chain, [1, 2, 3]), (_residual, [1, 3])])
def test_groups_and_the_output_map_compose_to_the_network(make, cuts: list[int]) -> None:  # noqa: ANN001
    net = make()
    assert output_map_refusal(net) is None
    x = np.random.default_rng(3).standard_normal((4, net.n_x))
    np.testing.assert_allclose(_compose(net, cuts, x, output_group=True), net.forward(x), rtol=1e-12, atol=1e-12)


def test_last_group_can_output_its_activations() -> None:
    net = _chain()
    group = depth_group(net, 2, 3, to_activations=True)
    assert group.output_shape == net.layers[3].shape and group.C.nnz == 0 and np.all(group.bias_y == 0)
    # to_activations changes nothing for a group that does not end at the last layer
    middle, same = depth_group(net, 1, 2), depth_group(net, 1, 2, to_activations=True)
    for name in ("A", "B", "C", "D"):
        assert (getattr(middle, name) != getattr(same, name)).nnz == 0


def test_output_map_is_the_last_layers_output_matrix() -> None:
    net = _chain()
    tail, last = output_map(net), net.layers[-1]
    assert tail.n_w == 0 and tail.layers == () and tail.input_shape == last.shape
    assert tail.output_shape == net.output_shape
    d_last = sp.csr_matrix(net.D)[:, last.start : last.stop]
    assert (d_last != tail.C).nnz == 0  # so its Lipschitz constant is ||D_last||
    np.testing.assert_array_equal(tail.bias_y, net.bias_y)
    np.testing.assert_array_equal(tail.jacobian(np.zeros(tail.n_x)), d_last.toarray())


def test_output_map_refused_when_the_output_reads_an_earlier_layer() -> None:
    net = _chain()
    first = net.layers[0]
    extra = sp.csr_matrix((np.ones(net.n_y), (np.arange(net.n_y), np.arange(net.n_y) % first.size)), shape=net.D.shape)
    skip = dataclasses.replace(net, D=sp.csr_matrix(net.D + extra))
    reason = output_map_refusal(skip)
    assert reason is not None and "reads layer 0 ('stage0'), not only the last layer 3 ('stage3')" in reason
    with pytest.raises(ValueError, match="cannot cut the output map off the last layer: the output reads layer 0"):
        output_map(skip)
    with pytest.raises(ValueError, match="cannot cut the output map"):
        depth_group(skip, 0, 3, to_activations=True)
    reads_x = dataclasses.replace(net, C=sp.csr_matrix(np.eye(net.n_y, net.n_x)))
    assert output_map_refusal(reads_x) == "the output reads the network input x"


def test_whole_network_is_one_group() -> None:
    net = _chain()
    group = depth_group(net, 0, len(net.layers) - 1)
    for name in ("A", "B", "C", "D"):
        assert (getattr(group, name) != getattr(net, name)).nnz == 0
    assert group.input_shape == net.input_shape and group.output_shape == net.output_shape


def test_group_shapes_and_selector_output() -> None:
    net = _chain()
    middle = depth_group(net, 1, 2)
    assert middle.input_shape == net.layers[0].shape
    assert middle.output_shape == net.layers[2].shape
    assert middle.C.nnz == 0 and np.all(middle.bias_y == 0)
    assert [lay.name for lay in middle.layers] == [net.layers[1].name, net.layers[2].name]
    assert middle.layers[0].start == 0 and middle.n_w == net.layers[1].size + net.layers[2].size


def test_last_group_holds_the_output_map() -> None:
    """A last group of one layer still carries y = D w (the tail after the last activation)."""
    net = _chain()
    tail = depth_group(net, 3, 3)
    assert tail.output_shape == net.output_shape and tail.n_w == net.layers[3].size
    np.testing.assert_array_equal(tail.bias_y, net.bias_y)


def test_network_without_head_ends_in_activations() -> None:
    net = _chain(head=None)
    x = np.random.default_rng(2).standard_normal((3, net.n_x))
    np.testing.assert_allclose(_compose(net, [2], x), net.forward(x), rtol=1e-12, atol=1e-12)


def test_invalid_cut_names_the_layer() -> None:
    net = _residual()
    with pytest.raises(
        ValueError, match=r"before layer 2 \('stage2'\).*layer 2 \('stage2'\) reads layer 0 \('stage0'\)"
    ):
        depth_group(net, 2, 4)
    with pytest.raises(ValueError, match=r"before layer 2"):
        depth_group(net, 0, 1)  # its end is the same invalid cut


def test_group_range_is_checked() -> None:
    with pytest.raises(ValueError, match="first <= last"):
        depth_group(_chain(), 2, 1)
