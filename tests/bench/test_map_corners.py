"""bench.map_corners: which corner block each map peaks in, and the table it records."""

from __future__ import annotations

import numpy as np

from mmad_edge.bench.map_corners import corner_counts, markdown


def test_corner_counts_place_each_peak_in_its_block_or_none():
    maps = np.zeros((5, 16, 16), dtype=np.float32)
    for index, (y, x) in enumerate([(0, 0), (3, 3), (0, 15), (12, 4), (15, 15)]):
        maps[index, y, x] = 1.0
    assert corner_counts(maps, 4) == {"top_left": 2, "top_right": 1, "bottom_left": 0, "bottom_right": 1}
    assert corner_counts(maps, 5)["bottom_left"] == 1  # (12, 4) is inside a 5-pixel block, not a 4-pixel one


def test_markdown_has_one_row_per_padding_and_category():
    entry = {"normal_images": 60, "peaks": {"top_left": 31, "top_right": 1, "bottom_left": 0, "bottom_right": 0},
             "turned_peaks": {"top_left": 28, "top_right": 0, "bottom_left": 1, "bottom_right": 0},
             "quarter_scale_corner_over_median": 20.05, "normal_score_mean": 0.05, "normal_score_std": 0.005,
             "image_auroc": 0.999, "pixel_auroc": 0.987}
    text = markdown({"command": "x", "block": 4, "runs": {"zeros": {"brick": entry}, "reflect": {"brick": entry}}})
    assert "| zeros | brick | 31/60 | 28/60 | 1/60 | 20.05 | 0.0050 | 0.100 | 0.999 | 0.987 |" in text
    assert text.count("| brick |") == 2
