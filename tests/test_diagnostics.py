"""The diagnostics that flag a chain that has not learned (seed evaluation)."""

from __future__ import annotations

import numpy as np
import pytest

from wsss_core.evaluation.diagnostics import (
    ClassPresence, background_only_miou, cam_statistics, describe_errors, error_breakdown, localisation_statistics,
    mean_row_perplexity, seed_flags, seed_map_statistics,
)


def test_background_only_miou_by_hand():
    # rows = ground truth: 60 bg pixels, 30 of class 1, 10 of class 2; class 3 absent from the ground truth
    confusion = [[50, 10, 0, 0], [5, 25, 0, 0], [0, 0, 10, 0], [0, 0, 0, 0]]
    # predicting background: IoU_bg = 60 / 100, classes 1 and 2 score 0, class 3 is left out
    assert background_only_miou(confusion) == pytest.approx(0.6 / 3)
    assert background_only_miou([[0, 0], [0, 0]]) is None


def test_cam_statistics_counts_empty_and_flat_maps():
    keys = np.array([1, 2])
    good = (np.stack([np.eye(4), np.zeros((4, 4))]), keys)
    empty = (np.zeros((2, 4, 4)), keys)
    flat = (np.full((2, 4, 4), 0.5), keys)
    with_bg = (np.stack([np.ones((4, 4)), np.zeros((4, 4))]), np.array([0, 1]))  # bg map ignored: empty fg
    stats = cam_statistics([good, empty, flat, with_bg])
    assert stats == {"images": 4, "empty_fraction": 0.5, "constant_fraction": 0.25}


def _result(miou, threshold, confusion):
    return {"best": {"miou": miou, "confusion": confusion}, "best_threshold": threshold}


def test_flags_fire_only_when_they_should():
    confusion = [[60, 0], [20, 20]]  # background-only mIoU = (60/100) / 2 = 0.3
    fine = seed_flags(_result(0.55, 0.3, confusion), [0.0, 0.1, 0.3, 0.95],
                      {"empty_fraction": 0.0, "constant_fraction": 0.0})
    assert fine["flags"] == {} and fine["background_only_miou"] == pytest.approx(0.3)
    bad = seed_flags(_result(0.305, 0.0, confusion), [0.0, 0.1, 0.95],
                     {"empty_fraction": 0.1, "constant_fraction": 0.2})
    assert set(bad["flags"]) == {"edge_threshold", "empty_cams", "constant_cams", "no_better_than_background"}
    assert "30.5" in bad["flags"]["no_better_than_background"] and "edge of the sweep" in bad["flags"]["edge_threshold"]
    # seeds with their own background map have no threshold: no edge flag
    assert "edge_threshold" not in seed_flags(_result(0.55, None, confusion), [0.0, 0.95],
                                              {"empty_fraction": 0.0, "constant_fraction": 0.0})["flags"]


def test_localisation_statistics_pointing_game_and_energy_inside_by_hand():
    # image 1: a background channel (skipped) and class 1 on two of five labelled pixels (one pixel ignored);
    # the map's maximum (1.0) is on class 1 -> hit; mass 2.0 on labelled pixels, 1.0 of it inside -> 0.5
    gt1 = np.array([[0, 1, 1], [0, 0, 255]])
    maps1 = np.array([[[1, 1, 1], [1, 1, 1]],
                      [[0.5, 1.0, 0.0], [0.5, 0.0, 0.9]]], dtype=np.float32)
    # image 2: class 1's maximum lies on class 2 -> miss, no mass inside; class 2's map is all zero -> miss,
    # energy 0, still counted; class 3 has no ground-truth pixels -> not a pair
    gt2 = np.array([[2, 2], [0, 1]])
    maps2 = np.array([[[1, 0], [0, 0]], np.zeros((2, 2)), [[1, 1], [1, 1]]], dtype=np.float32)
    stats = localisation_statistics([(maps1, np.array([0, 1]), gt1), (maps2, np.array([1, 2, 3]), gt2)])
    assert stats["pairs"] == 3
    assert stats["pointing_accuracy"] == pytest.approx(1 / 3)
    assert stats["energy_inside"] == pytest.approx(0.5 / 3)
    assert stats["pointing_chance"] == pytest.approx((2 / 5 + 1 / 4 + 2 / 4) / 3)
    assert stats["energy_gain"] == pytest.approx((0.5 / 3) / ((2 / 5 + 1 / 4 + 2 / 4) / 3))
    # mass on any object: image 1's class-1 map 0.5 (its own class); image 2's class-1 map all on class 2 -> 1.0;
    # the empty map 0; objects' area shares 2/5, 3/4, 3/4
    assert stats["energy_on_objects"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert stats["objects_chance"] == pytest.approx((2 / 5 + 3 / 4 + 3 / 4) / 3)


def test_localisation_statistics_of_a_flat_map_is_chance_and_of_the_mask_itself_is_perfect():
    gt = np.zeros((8, 8), dtype=np.int64)
    gt[2:5, 3:7] = 4
    flat = localisation_statistics([(np.full((1, 8, 8), 0.3, dtype=np.float32), np.array([4]), gt)])
    assert flat["energy_gain"] == pytest.approx(1.0)
    assert flat["pointing_accuracy"] == 0.0  # the first maximum (0, 0) is background
    exact = localisation_statistics([((gt == 4)[None].astype(np.float32), np.array([4]), gt)])
    assert exact["pointing_accuracy"] == 1.0 and exact["energy_inside"] == pytest.approx(1.0)
    assert exact["energy_gain"] == pytest.approx(64 / 12)
    assert localisation_statistics([])["pairs"] == 0


def test_seed_map_statistics_is_both_statistics_in_one_pass():
    gt = np.array([[0, 1, 1], [2, 2, 255]])
    images = [(np.array([[[0.2, 0.9, 0.4], [0.1, 0.0, 0.3]], [[0.0, 0.1, 0.0], [0.7, 0.6, 0.0]]]), np.array([1, 2]), gt),
              (np.zeros((1, 2, 3)), np.array([1]), gt),
              (np.full((1, 2, 3), 0.5), np.array([2]), gt)]
    cams, localisation = seed_map_statistics(iter(images))
    assert cams == cam_statistics((maps, keys) for maps, keys, _ in images)
    assert cams["empty_fraction"] == pytest.approx(1 / 3) and cams["constant_fraction"] == pytest.approx(1 / 3)
    assert localisation == localisation_statistics(images)
    assert localisation["pairs"] == 4


def test_error_breakdown_by_hand():
    # rows = ground truth (bg, 1, 2): 100 object pixels of class 1, 50 of class 2
    confusion = [[200, 10, 30],   # background: 40 pixels called an object
                 [20, 70, 10],    # class 1: 70 right, 20 to background, 10 to class 2
                 [5, 15, 30]]     # class 2: 30 right, 5 to background, 15 to class 1
    errors = error_breakdown(confusion)
    assert errors["correct"] == pytest.approx(100 / 150)
    assert errors["missed"] == pytest.approx(25 / 150)
    assert errors["confused"] == pytest.approx(25 / 150)
    # predicted foreground: 95 + 70 = 165, of which 40 on background
    assert errors["false_foreground"] == pytest.approx(40 / 165)
    # objects vs background: 125 object-on-object pixels over 390 - 200 pixels where either is an object
    assert errors["foreground_iou"] == pytest.approx(125 / 190)
    # nothing to take a share of: no object in the ground truth, nothing predicted
    assert error_breakdown([[9, 0], [0, 0]]) == {"correct": None, "missed": None, "confused": None,
                                                 "false_foreground": None, "foreground_iou": None}


def test_class_presence_counts_absent_and_left_out_classes():
    presence = ClassPresence()
    truth = np.array([[0, 1], [1, 255]])
    presence.update(np.array([[0, 1], [1, 0]]), truth)      # right classes (the ignored pixel is not looked at)
    presence.update(np.array([[2, 1], [1, 3]]), truth)      # class 2 absent from the image; 3 on an ignored pixel
    presence.update(np.array([[0, 0], [255, 4]]), truth)    # class 1 left out (its pixel unlabelled, the other bg)
    assert presence.summary() == {"images": 3, "names_absent_class": pytest.approx(1 / 3),
                                  "misses_present_class": pytest.approx(1 / 3)}
    assert ClassPresence().summary() == {"images": 0, "names_absent_class": None, "misses_present_class": None}
    line = describe_errors({**error_breakdown([[3, 1], [1, 3]]), **presence.summary()})
    assert "75.0 % to their class, 25.0 % to background, 0.0 % to another class" in line
    assert "33.3 % of the images given a class they do not contain" in line


def test_mean_row_perplexity_counts_the_entries_a_row_spreads_over():
    # a one-hot row spreads over 1 entry, a flat row over all 4, a row split evenly over two entries over 2
    weights = np.array([[0.0, 3.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.5, 0.5, 0.0]])
    assert mean_row_perplexity(weights) == pytest.approx((1 + 4 + 2) / 3)
    assert mean_row_perplexity(weights[None].repeat(2, axis=0)) == pytest.approx(7 / 3)  # leading dims averaged
