"""Connected components: scikit-image agreement, hand-built cases, one-piece fraction."""

import math

import numpy as np
import pytest
import torch
from skimage.measure import label as sk_label

from attnunet.metrics.components import label_components, num_components, one_piece_fraction

# ------------------------------------------------------------------ agreement with skimage


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images split the voxels identically (0 must match 0)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    # a bijection between the labels: every label of a meets exactly one of b and back
    return (
        len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))
        and ((pairs[0] == 0) == (pairs[1] == 0)).all()
    )


@pytest.mark.parametrize("shape", [(40,), (17, 19), (7, 8, 9), (4, 5, 3, 4)])
def test_label_components_matches_skimage_for_every_connectivity(shape):
    rng = np.random.default_rng(len(shape))
    for density in (0.2, 0.45, 0.6):
        mask = rng.random(shape) < density
        for connectivity in range(1, len(shape) + 1):
            labels, count = label_components(mask, connectivity=connectivity)
            ref, ref_count = sk_label(mask, connectivity=connectivity, return_num=True)
            assert count == ref_count
            assert labels.shape == mask.shape and labels.dtype == np.int32
            assert labels.max() == count
            assert _same_partition(labels, ref)


@pytest.mark.parametrize("shape", [(3, 12, 13), (2, 6, 7, 5)])
def test_num_components_matches_skimage_per_image(shape):
    rng = np.random.default_rng(11)
    masks = rng.random(shape) < 0.4
    masks[0] = False  # an empty image counts 0
    for connectivity in range(1, len(shape)):
        ref = [sk_label(m, connectivity=connectivity, return_num=True)[1] for m in masks]
        out = num_components(masks, spatial_dims=len(shape) - 1, connectivity=connectivity)
        assert out.dtype == np.int64
        assert out.tolist() == ref
        # one-piece exactly where skimage counts one component
        scores = one_piece_fraction(
            masks, spatial_dims=len(shape) - 1, connectivity=connectivity, reduction="none"
        )
        assert scores.tolist() == [float(r == 1) for r in ref]


def test_multiclass_counts_match_skimage_per_class():
    rng = np.random.default_rng(12)
    labels = rng.integers(0, 4, (2, 10, 11))
    for connectivity in (1, 2):
        out = num_components(labels, spatial_dims=2, connectivity=connectivity, num_classes=4)
        assert out.shape == (2, 3)  # classes 1..3
        ref = [
            [sk_label(img == c, connectivity=connectivity, return_num=True)[1] for c in (1, 2, 3)]
            for img in labels
        ]
        assert out.tolist() == ref


# ------------------------------------------------------------------ hand-built cases


def test_diagonal_pixels():
    #   1 0
    #   0 1
    diagonal = torch.tensor([[[1, 0], [0, 1]]])
    # faces only: the two pixels do not touch -> 2 pieces, not one-piece
    assert num_components(diagonal, spatial_dims=2).tolist() == [2]
    assert one_piece_fraction(diagonal, spatial_dims=2).item() == 0.0
    # corners join them -> 1 piece
    assert num_components(diagonal, spatial_dims=2, connectivity=2).tolist() == [1]
    assert one_piece_fraction(diagonal, spatial_dims=2, connectivity=2).item() == 1.0


def test_3d_edge_and_corner_neighbours():
    # Voxels sharing an edge (2 steps) join for connectivity >= 2, sharing only a corner
    # (3 steps) for connectivity 3.
    edge = np.zeros((1, 2, 2, 2), dtype=bool)
    edge[0, 0, 0, 0] = edge[0, 1, 1, 0] = True
    corner = np.zeros((1, 2, 2, 2), dtype=bool)
    corner[0, 0, 0, 0] = corner[0, 1, 1, 1] = True
    for mask, expected in ((edge, [2, 1, 1]), (corner, [2, 2, 1])):
        counts = [num_components(mask, spatial_dims=3, connectivity=c) for c in (1, 2, 3)]
        assert [int(c[0]) for c in counts] == expected


def test_label_components_hand_built():
    # 1D: runs 1 1 | 1 | 1 1 1 separated by zeros -> three components numbered in order
    labels, count = label_components(np.array([1, 1, 0, 1, 0, 0, 1, 1, 1]))
    assert count == 3
    assert labels.tolist() == [1, 1, 0, 2, 0, 0, 3, 3, 3]
    # touching different non-zero values join one component; an empty mask has none
    assert label_components(np.array([[3, 7], [0, 0]]))[1] == 1
    labels, count = label_components(np.zeros((3, 3), dtype=np.uint8))
    assert count == 0 and not labels.any()
    # torch input works and gives NumPy labels
    labels, count = label_components(torch.tensor([[True, False, True]]))
    assert isinstance(labels, np.ndarray) and labels.tolist() == [[1, 0, 2]] and count == 2


def test_empty_mask_is_not_one_piece():
    masks = np.zeros((3, 4, 4), dtype=bool)
    masks[0, 1:3, 1:3] = True  # one square: one piece
    masks[1, 0, 0] = masks[1, 3, 3] = True  # two pixels far apart
    # masks[2] is empty
    assert num_components(masks, spatial_dims=2).tolist() == [1, 2, 0]
    assert one_piece_fraction(masks, spatial_dims=2, reduction="none").tolist() == [1.0, 0.0, 0.0]
    assert float(one_piece_fraction(masks, spatial_dims=2)) == pytest.approx(1 / 3)
    # users may count empty masks as one-piece, or leave them out of the mean
    one = one_piece_fraction(masks, spatial_dims=2, empty_value=1.0, reduction="none")
    assert one.tolist() == [1, 0, 1]
    assert float(one_piece_fraction(masks, spatial_dims=2, empty_value=math.nan)) == 0.5
    assert math.isnan(float(one_piece_fraction(masks[2:], spatial_dims=2, empty_value=math.nan)))


def test_multiclass_and_one_hot():
    # Label map 2x5, classes 0..3:
    #   1 1 0 2 0
    #   0 1 0 0 2
    # class 1: one piece {(0,0), (0,1), (1,1)}; class 2: two pieces (diagonal) with
    # connectivity 1, one with 2; class 3: absent (empty -> 0.0).
    labels = torch.tensor([[[1, 1, 0, 2, 0], [0, 1, 0, 0, 2]]])
    out = one_piece_fraction(labels, spatial_dims=2, num_classes=4, reduction="none")
    assert out.tolist() == [[1.0, 0.0, 0.0]]
    assert one_piece_fraction(labels, spatial_dims=2, num_classes=4).item() == pytest.approx(1 / 3)
    out = one_piece_fraction(
        labels, spatial_dims=2, num_classes=4, connectivity=2, reduction="none"
    )
    assert out.tolist() == [[1.0, 1.0, 0.0]]
    # background (class 0) at (0,2), (0,4), (1,0), (1,2), (1,3) is three pieces with
    # connectivity 1: {(0,2), (1,2), (1,3)}, {(0,4)}, {(1,0)}
    counts = num_components(labels, spatial_dims=2, num_classes=4, include_background=True)
    assert counts.tolist() == [[3, 1, 2, 0]]
    # binary: every non-zero label is foreground: {(0,0),(0,1),(1,1)}, {(0,3)}, {(1,4)}
    assert num_components(labels, spatial_dims=2).tolist() == [3]
    # one-hot (B, C, H, W): the same masks give the same numbers; channels may overlap
    one_hot = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2)
    assert num_components(one_hot, spatial_dims=2, one_hot=True).tolist() == [[1, 2, 0]]
    counts = num_components(one_hot, spatial_dims=2, one_hot=True, include_background=True)
    assert counts.tolist() == [[3, 1, 2, 0]]
    overlapping = one_hot.clone()
    overlapping[:, 3] = overlapping[:, 1] | overlapping[:, 2]  # class 1 and 2 together
    assert num_components(overlapping, spatial_dims=2, one_hot=True).tolist() == [[1, 2, 3]]
    counts = num_components(overlapping, spatial_dims=2, one_hot=True, connectivity=2)
    assert counts.tolist() == [[1, 1, 2]]


def test_numpy_and_torch_agree():
    rng = np.random.default_rng(13)
    masks = rng.random((4, 6, 6)) < 0.5
    masks[1] = False
    masks[2] = True  # the full image is one piece
    for kw in ({}, {"connectivity": 2}, {"empty_value": math.nan}):
        np_out = one_piece_fraction(masks, spatial_dims=2, **kw, reduction="none")
        t_out = one_piece_fraction(torch.from_numpy(masks), spatial_dims=2, **kw, reduction="none")
        assert np_out.dtype == np.float64 and t_out.dtype == torch.float32
        np.testing.assert_array_equal(np_out, t_out.numpy())
        np_mean, t_mean = (
            one_piece_fraction(masks, spatial_dims=2, **kw),
            one_piece_fraction(torch.from_numpy(masks), spatial_dims=2, **kw),
        )
        assert isinstance(np_mean, np.floating) and t_mean.shape == ()
        assert float(t_mean) == pytest.approx(float(np_mean))
    counts = num_components(torch.from_numpy(masks), spatial_dims=2)
    assert counts.dtype == torch.int64
    assert counts.tolist() == num_components(masks, spatial_dims=2).tolist()
    assert counts[1] == 0 and counts[2] == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_inputs_device():
    masks = torch.tensor([[[1, 0], [0, 1]], [[1, 1], [0, 0]]], device="cuda")
    out = one_piece_fraction(masks, spatial_dims=2, reduction="none")
    assert out.device == masks.device and out.dtype == torch.float32
    assert out.tolist() == [0.0, 1.0]
    counts = num_components(masks, spatial_dims=2)
    assert counts.device == masks.device and counts.tolist() == [2, 1]


# ------------------------------------------------------------------ errors


def test_invalid_arguments():
    masks = torch.ones(2, 3, 3, dtype=torch.bool)  # two 3 x 3 images
    s2 = {"spatial_dims": 2}
    for fn in (num_components, one_piece_fraction):
        # probabilities are refused; floats holding whole numbers are masks
        with pytest.raises(TypeError, match="threshold"):
            fn(masks.float() * 0.5, **s2)
        assert torch.equal(fn(masks.float(), **s2), fn(masks, **s2))
        with pytest.raises(TypeError, match=r"numpy\.ndarray"):
            fn(masks.tolist(), **s2)
        # no spatial axis left for 2 spatial dims; and no spatial_dims at all
        with pytest.raises(ValueError, match="spatial"):
            fn(masks[0, 0], **s2)
        with pytest.raises(ValueError, match="pass spatial_dims"):
            fn(masks)
        for connectivity in (0, 3, True, 1.5):
            with pytest.raises(ValueError, match=r"connectivity must be an int in 1\.\.2"):
                fn(masks, connectivity=connectivity, **s2)
        with pytest.raises(ValueError, match=r"outside 0\.\.2"):
            fn(masks.long() * 3, num_classes=3, **s2)
        with pytest.raises(ValueError, match="num_classes"):
            fn(masks, num_classes=1, **s2)
    with pytest.raises(ValueError, match="reduction"):
        one_piece_fraction(masks, spatial_dims=2, reduction="sum")
    with pytest.raises(
        ValueError, match=r"connectivity must be an int in 1\.\.3 for 3 spatial axes"
    ):
        label_components(np.ones((2, 2, 2), dtype=bool), connectivity=4)
    with pytest.raises(ValueError, match="at least one axis"):
        label_components(np.array(True))
    with pytest.raises(TypeError, match="threshold"):
        label_components(np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        label_components([[1, 0], [0, 1]])


def test_connectivity_is_keyword_only():
    from attnunet.metrics.components import connectivity_structure

    diagonal = np.array([[1, 0], [0, 1]], dtype=bool)
    with pytest.raises(TypeError, match="positional"):
        label_components(diagonal, 2)  # type: ignore[call-arg]
    assert label_components(diagonal, connectivity=2)[1] == 1
    with pytest.raises(TypeError, match="positional"):
        connectivity_structure(2, 2)  # type: ignore[call-arg]
    assert connectivity_structure(2, connectivity=2).all()
