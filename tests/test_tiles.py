"""Width tiles: grids, exact tile extraction on real convolution geometry, block keys."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from convnets import INPUT, Conv, random_convnet

from lipcert.network.form import Layer, Network
from lipcert.partition.tiles import block_key, extract_tile, range_tiles, receptive_cone, spatial_tiles

# Layouts that exercise stride, padding, dilation, groups and residual branches.
LAYOUTS = {
    "stride-pad-dilation": ((2, 9, 8), [Conv(4, 3, 2, 1, 1, 2), Conv(4, 3, 1, 2, 2)], Conv(3, 2, 1, 0)),
    "residual": ((2, 7, 7), [Conv(2, 3, 1, 1), Conv(2, 3, 1, 1, skip_from=INPUT), Conv(2, 3, 1, 1, skip_from=0)], None),
    "grouped-tanh": ((4, 6, 7), [Conv(4, 3, 1, 1, 1, 4, "tanh"), Conv(6, 1, 1, 0, 1, 2, "leaky_relu", 0.1)], Conv(2)),
}


def _net(name: str, seed: int = 0):
    shape, stages, head = LAYOUTS[name]
    return random_convnet(shape, stages, head, seed=seed)


def test_spatial_tiles_use_torch_flat_order() -> None:
    tiles = spatial_tiles((2, 4, 5), 2, 2)
    # top-left tile: rows 0-1, cols 0-2 of both channels; index = c*20 + h*5 + w
    assert tiles[0].tolist() == [0, 1, 2, 5, 6, 7, 20, 21, 22, 25, 26, 27]
    assert tiles[3].tolist() == [13, 14, 18, 19, 33, 34, 38, 39]


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (2, 3), (4, 5), (3, 1)])
def test_spatial_tiles_partition_the_output(rows: int, cols: int) -> None:
    tiles = spatial_tiles((3, 4, 5), rows, cols)
    assert len(tiles) == rows * cols
    assert np.array_equal(np.sort(np.concatenate(tiles)), np.arange(60))
    heights = {len(np.unique(t % 20 // 5)) for t in tiles}
    assert max(heights) - min(heights) <= 1  # near-equal pieces


@pytest.mark.parametrize(("rows", "cols", "message"), [(0, 1, r"1\.\.4"), (5, 1, r"1\.\.4"), (1, 6, r"1\.\.5")])
def test_spatial_tiles_state_the_valid_range(rows: int, cols: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spatial_tiles((3, 4, 5), rows, cols)


def test_spatial_tiles_reject_non_spatial_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        spatial_tiles((10,), 1, 1)


def test_range_tiles() -> None:
    parts = range_tiles(10, 3)
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(ValueError, match=r"\[1, 10\]"):
        range_tiles(10, 11)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (3, 2)])
def test_tile_forward_is_exact(name: str, grid: tuple[int, int]) -> None:
    convnet = _net(name)
    net = convnet.form
    x = np.random.default_rng(1).standard_normal((6, net.n_x))
    y = net.forward(x)
    np.testing.assert_allclose(y, convnet.torch_forward(x), rtol=1e-12, atol=1e-12)
    rows, cols = min(grid[0], net.output_shape[1]), min(grid[1], net.output_shape[2])
    for output_rows in spatial_tiles(net.output_shape, rows, cols):
        tile = extract_tile(net, output_rows)
        np.testing.assert_allclose(tile.net.forward(x[:, tile.input_index]), y[:, output_rows], rtol=1e-12, atol=1e-12)


def test_single_output_tiles_are_exact_and_smaller() -> None:
    net = _net("stride-pad-dilation").form
    x = np.random.default_rng(2).standard_normal((3, net.n_x))
    for r in range(0, net.n_y, 7):
        tile = extract_tile(net, [r])
        assert tile.net.n_w < net.n_w
        np.testing.assert_allclose(tile.net.forward(x[:, tile.input_index]), net.forward(x)[:, [r]], atol=1e-12)


def test_tile_keeps_output_order_and_layer_names() -> None:
    net = _net("residual").form
    rows = np.array([40, 3, 17])
    tile = extract_tile(net, rows)
    x = np.random.default_rng(3).standard_normal((2, net.n_x))
    np.testing.assert_allclose(tile.net.forward(x[:, tile.input_index]), net.forward(x)[:, rows], atol=1e-12)
    assert [lay.name for lay in tile.net.layers] == [lay.name for lay in net.layers]
    assert all(lay.shape == (lay.size,) for lay in tile.net.layers)
    assert np.array_equal(tile.output_index, rows)


def test_receptive_cone_of_pointwise_chain() -> None:
    """1x1 convolutions: one output pixel depends on the same pixel of every layer only."""
    convnet = random_convnet((2, 3, 3), [Conv(2, 1, 1, 0), Conv(2, 1, 1, 0)], Conv(1, 1, 1, 0))
    net = convnet.form
    cone = receptive_cone(net, np.array([4]))  # the centre pixel
    assert cone.tolist() == [4, 13, 18 + 4, 18 + 13]
    assert extract_tile(net, [4]).input_index.tolist() == [4, 13]


def test_tile_reads_direct_input_through_C() -> None:
    """y = x + D relu(A x): the pixels a tile reads include those of C's rows."""
    rng = np.random.default_rng(4)
    A = sp.csr_matrix(np.triu(rng.standard_normal((3, 3))))
    layer = Layer("h", "relu", 0, 3, (3,), 0.0, 1.0)
    D = sp.csr_matrix(np.diag([1.0, 2.0, 3.0]))
    net = Network(
        A, sp.csr_matrix((3, 3)), sp.identity(3, format="csr"), D, np.zeros(3), np.zeros(3), (layer,), (3,), (3,)
    )
    tile = extract_tile(net, [2])
    assert tile.input_index.tolist() == [2]
    assert tile.neuron_index.tolist() == [2]
    x = rng.standard_normal((4, 3))
    np.testing.assert_allclose(tile.net.forward(x[:, [2]]), net.forward(x)[:, [2]])


def test_extract_tile_validates_rows() -> None:
    net = _net("residual").form
    with pytest.raises(ValueError, match="distinct"):
        extract_tile(net, [1, 1])
    with pytest.raises(ValueError, match=r"\[0, 98\)"):
        extract_tile(net, [98])


def test_interior_tiles_share_a_key_and_boundary_tiles_do_not() -> None:
    net = random_convnet((2, 16, 16), [Conv(3), Conv(3)], Conv(2), seed=5).form
    keys = np.array([block_key(extract_tile(net, t).net) for t in spatial_tiles(net.output_shape, 4, 4)]).reshape(4, 4)
    interior = keys[1:3, 1:3]
    assert len(set(interior.ravel())) == 1
    boundary = set(keys.ravel()) - set(interior.ravel())
    assert interior[0, 0] not in boundary and len(boundary) == 8  # 4 corners + 4 distinct edges
    assert keys[0, 1] == keys[0, 2]  # same edge, same shape: reusable too


def test_strided_interior_tiles_share_a_key() -> None:
    """Stride 2: one output step is two input steps, so interior tiles still coincide."""
    net = random_convnet((1, 16, 16), [Conv(2, 3, 2, 1)], Conv(2), seed=6).form  # output 2 x 8 x 8
    keys = [block_key(extract_tile(net, t).net) for t in spatial_tiles(net.output_shape, 1, 8)]
    assert len(set(keys[2:7])) == 1  # tile 1 still reaches the input's zero padding
    assert len({keys[0], keys[1], keys[2], keys[7]}) == 4


def test_block_key_ignores_storage_details_and_biases() -> None:
    net = _net("grouped-tanh").form
    A = net.A.tocoo()
    messy = sp.coo_matrix(
        (np.r_[A.data, 0.0], (np.r_[A.row, 0], np.r_[A.col, 0])), shape=A.shape
    ).tocsr()  # an explicit zero, unsorted
    twin = dataclasses.replace(net, A=messy, bias_v=net.bias_v + 1.0)
    assert block_key(twin) == block_key(net)
    scaled = dataclasses.replace(net, D=net.D * 2.0)
    assert block_key(scaled) != block_key(net)
    leaky = dataclasses.replace(net, layers=(dataclasses.replace(net.layers[0], alpha=0.5),) + net.layers[1:])
    assert block_key(leaky) != block_key(net)


def test_a_tile_keeps_the_per_neuron_slopes_of_its_neurons() -> None:
    """PReLU-like layers carry per-neuron slopes; a tile must read its own neurons' ones, not the envelope."""
    import dataclasses

    from lipcert.network.subnet import subnetwork

    layer = Layer("h", "leaky_relu", 0, 4, (4,), 0.1, 1.0, 0.0)
    layer = dataclasses.replace(layer, alphas=np.array([0.1, 0.5, 0.2, 0.9]), betas=np.ones(4))
    A = sp.csr_matrix(np.eye(4))
    net = Network(A, sp.csr_matrix((4, 4)), sp.csr_matrix((4, 4)), sp.csr_matrix(np.eye(4)), np.zeros(4),
                  np.zeros(4), (layer,), (4,), (4,))  # fmt: skip
    sub = subnetwork(net, np.array([1, 3]), np.array([1, 3]), np.array([1, 3]))
    np.testing.assert_array_equal(sub.alpha, [0.5, 0.9])
