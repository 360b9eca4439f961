"""CAM → pseudo-label rules on hand-made CAMs: thresholds, 255 ignore, boxes, ROI, affinity pairs, PAR labels."""

from __future__ import annotations

import torch

from wsss_core.single_stage.par import PixelAdaptiveRefinement
from wsss_core.single_stage.pseudo_labels import (
    affinity_labels,
    box_mask,
    cams_to_labels,
    cams_to_labels_with_ignore,
    par_refined_labels,
    roi_map,
    token_labels,
)

# Two classes on a 1×5 strip; class 2 is absent from the image labels.
CAMS = torch.tensor([[[[0.9, 0.7, 0.5, 0.25, 0.1]], [[0.1, 0.2, 0.6, 0.95, 0.0]]]])
LABELS = torch.tensor([[1.0, 0.0]])
BOTH = torch.tensor([[1.0, 1.0]])


def test_evaluation_rule_single_threshold() -> None:
    assert cams_to_labels(CAMS, LABELS, 0.5).tolist() == [[[1, 1, 0, 0, 0]]]
    # with both classes present, the argmax picks class 2 where it is larger
    assert cams_to_labels(CAMS, BOTH, 0.5).tolist() == [[[1, 1, 2, 2, 0]]]


def test_training_rule_two_thresholds_and_ignore() -> None:
    # v = 0.9 > 0.7 → 1; 0.7 (= high) → 255; 0.5 → 255; 0.25 (= low) → 0; 0.1 → 0
    assert cams_to_labels_with_ignore(CAMS, LABELS, 0.25, 0.7).tolist() == [[[1, 255, 255, 0, 0]]]
    assert cams_to_labels_with_ignore(CAMS, BOTH, 0.25, 0.7).tolist() == [[[1, 255, 255, 2, 0]]]


def test_training_rule_outside_valid_box_is_ignored() -> None:
    valid = torch.tensor([[[False, True, True, True, False]]])
    assert cams_to_labels_with_ignore(CAMS, LABELS, 0.25, 0.7, valid).tolist() == [[[255, 255, 255, 0, 255]]]


def test_box_mask_clips_like_a_slice() -> None:
    mask = box_mask(torch.tensor([[1, 3, 0, 99]]), 4, 3)
    expected = [[False] * 3, [True] * 3, [True] * 3, [False] * 3]
    assert mask[0].tolist() == expected


def test_roi_map_scores_background_uncertain_foreground() -> None:
    # v: 0.9 → 2, 0.7 (= high) → 2, 0.5 → 1, 0.25 (= low) → 0, 0.1 → 0
    assert roi_map(CAMS, LABELS, 0.25, 0.7).tolist() == [[[2, 2, 1, 0, 0]]]


def test_affinity_labels_pairs_by_hand() -> None:
    token_label = torch.tensor([[[0, 1], [255, 1]]])  # tokens t0=0, t1=1, t2=ignore, t3=1
    expected = [
        [255, 0, 255, 0],
        [0, 255, 255, 1],
        [255, 255, 255, 255],
        [0, 1, 255, 255],
    ]
    assert affinity_labels(token_label)[0].tolist() == expected


def test_affinity_background_pairs_are_positive() -> None:
    assert affinity_labels(torch.zeros(1, 1, 2, dtype=torch.long))[0].tolist() == [[255, 1], [1, 255]]


def test_token_labels_box_in_pixels_reproduces_the_authors_bug() -> None:
    cams = torch.full((1, 1, 96, 96), 0.9)  # every token foreground
    labels = torch.tensor([[1.0]])
    top_padded = torch.tensor([[16, 96, 0, 96]])  # 16 px of zero padding at the top
    faithful = token_labels(cams, labels, (6, 6), 0.25, 0.7, top_padded, 16, "pixels")
    fixed = token_labels(cams, labels, (6, 6), 0.25, 0.7, top_padded, 16, "tokens")
    # pixel rows 16..96 applied to 6 token rows keep none: the whole label is ignored
    assert (faithful == 255).all()
    # fixed: token row 0 (pixels 0..16, centre 8) is padding, rows 1..5 are valid
    assert (fixed[0, 0] == 255).all() and (fixed[0, 1:] == 1).all()


def test_token_labels_box_in_pixels_does_not_mask_bottom_padding() -> None:
    cams = torch.full((1, 1, 96, 96), 0.9)
    bottom_padded = torch.tensor([[0, 40, 0, 96]])  # valid rows 0..40 px
    faithful = token_labels(cams, torch.tensor([[1.0]]), (6, 6), 0.25, 0.7, bottom_padded, 16, "pixels")
    fixed = token_labels(cams, torch.tensor([[1.0]]), (6, 6), 0.25, 0.7, bottom_padded, 16, "tokens")
    assert (faithful == 1).all()
    # token centres 8, 24 lie inside [0, 40); 40, 56, ... do not
    assert (fixed[0, :2] == 1).all() and (fixed[0, 2:] == 255).all()


def test_par_labels_dual_background_rule() -> None:
    """With PAR reduced to the identity (0 iterations, full resolution), the labels are the argmax of
    [bg, CAM]: foreground beats the high background, background wins even against the low one."""
    cams = torch.tensor([[[[0.9, 0.5, 0.1, 0.9]], [[0.0, 0.0, 0.0, 0.95]]]])
    labels = torch.tensor([[1.0, 0.0]])  # class 2 absent: its 0.95 must not count
    image = torch.rand(1, 3, 1, 4)
    identity = PixelAdaptiveRefinement(dilations=(1,), num_iterations=0)
    result = par_refined_labels(identity, image, cams, labels, low=0.25, high=0.7, downscale=1)
    assert result.tolist() == [[[1, 255, 0, 1]]]
    boxed = par_refined_labels(identity, image, cams, labels, 0.25, 0.7, torch.tensor([[0, 1, 0, 3]]), downscale=1)
    assert boxed.tolist() == [[[1, 255, 0, 255]]]


def test_par_labels_keep_class_ids_of_present_classes() -> None:
    cams = torch.zeros(1, 3, 2, 2)
    cams[0, 2, 0, 0] = 0.99  # class 3 present and confident at one pixel
    labels = torch.tensor([[0.0, 0.0, 1.0]])
    identity = PixelAdaptiveRefinement(dilations=(1,), num_iterations=0)
    result = par_refined_labels(identity, torch.rand(1, 3, 2, 2), cams, labels, 0.25, 0.7, downscale=1)
    assert result.tolist() == [[[3, 0], [0, 0]]]


def test_par_labels_are_smoothed_by_refinement_on_a_uniform_image() -> None:
    """A single confident pixel on a flat image is averaged away by 10 PAR iterations."""
    cams = torch.zeros(1, 1, 8, 8)
    cams[0, 0, 4, 4] = 1.0
    image = torch.full((1, 3, 8, 8), 0.5)
    result = par_refined_labels(PixelAdaptiveRefinement(dilations=(1, 2)), image, cams, torch.ones(1, 1), 0.25, 0.7,
                                downscale=1)
    assert (result == 0).all()


def test_par_labels_of_maps_threshold_and_absent_classes() -> None:
    """One threshold, no ignore: a uniform image (PAR keeps the scores) labels exactly where the
    present class's map exceeds the background threshold; absent classes never appear."""
    from wsss_core.single_stage.par import PixelAdaptiveRefinement
    from wsss_core.single_stage.pseudo_labels import par_labels_of_maps

    image = torch.full((1, 3, 8, 8), 0.5)
    maps = torch.zeros(1, 8, 8)
    maps[0, :, 4:] = 0.9  # class 3 on the right half
    label = par_labels_of_maps(PixelAdaptiveRefinement([1], 2), image, maps, torch.tensor([3]), 4, 0.5, 1)
    expected = torch.zeros(8, 8, dtype=torch.long)
    expected[:, 4:] = 3
    assert torch.equal(label, expected)
    nothing = par_labels_of_maps(PixelAdaptiveRefinement([1], 2), image, maps[:0], torch.tensor([], dtype=torch.long),
                                 4, 0.5, 1)
    assert torch.equal(nothing, torch.zeros(8, 8, dtype=torch.long))
