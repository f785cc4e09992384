"""Metrics pinned on constructed cases with known answers: a perfect map, an inverted map, a random map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camstream.eval import (
    AverageDrop,
    BoundaryF1,
    DeletionAUC,
    Dice,
    IncreaseInConfidence,
    InsertionAUC,
    IoU,
    PointingGame,
    Precision,
    Recall,
)
from camstream.eval.faithfulness import (
    Adcc,
    DeletionCorrelation,
    InsertionCorrelation,
    row_correlation,
)
from camstream.eval.localisation import precision_recall_curve
from camstream.eval.metric import top_fraction_masks
from camstream.eval.robustness import MaxSensitivity, TemporalStability

SIZE = 32
RNG = np.random.default_rng(5)


def square_truth(batch: int = 3) -> np.ndarray:
    truth = np.zeros((batch, SIZE, SIZE), bool)
    truth[:, 8:20, 10:22] = True  # 144 of 1,024 pixels
    return truth


def maps_for(truth: np.ndarray) -> dict[str, np.ndarray]:
    smooth = RNG.random(truth.shape) * 0.1  # breaks ties inside and outside
    return {"perfect": truth + smooth, "inverted": (~truth) + smooth, "random": RNG.random(truth.shape)}


@pytest.mark.parametrize("metric", [IoU(), Dice(), Precision(), Recall(), BoundaryF1()])
def test_overlap_metrics_are_1_for_the_truth_and_0_for_its_complement(metric):
    truth = square_truth()
    assert np.allclose(metric(truth, truth), 1.0)
    assert np.allclose(metric(~truth, truth), 0.0) or metric.name == "boundary_f1"
    assert metric.higher_is_better and metric.category == "localisation"


def test_overlap_metrics_follow_their_formulas_on_a_half_overlap():
    truth = square_truth(1)
    shown = np.zeros_like(truth)
    shown[:, 8:20, 16:28] = True  # same size, half of it on the truth
    assert IoU()(shown, truth)[0] == pytest.approx(72 / (144 + 144 - 72))
    assert Dice()(shown, truth)[0] == pytest.approx(0.5)
    assert Precision()(shown, truth)[0] == pytest.approx(0.5)
    assert Recall()(shown, truth)[0] == pytest.approx(0.5)
    assert 0.0 < BoundaryF1()(shown, truth)[0] < 1.0


def test_empty_masks_score_zero_not_nan():
    truth = square_truth(1)
    empty = np.zeros_like(truth)
    for metric in (IoU(), Dice(), Precision(), Recall(), BoundaryF1()):
        assert metric(empty, truth)[0] == 0.0


def test_localisation_ranks_perfect_over_random_over_inverted():
    truth = square_truth(8)
    maps = maps_for(truth)
    keep = truth[0].mean()
    scores = {name: IoU()(top_fraction_masks(m, keep), truth).mean() for name, m in maps.items()}
    assert scores["perfect"] == pytest.approx(1.0) and scores["inverted"] == 0.0
    assert scores["inverted"] < scores["random"] < scores["perfect"]
    # 15 px of tolerance would cover half of this 32-px picture: the tolerance-free game ranks these maps
    points = {name: PointingGame(tolerance=0)(m, truth).mean() for name, m in maps.items()}
    assert points["perfect"] == 1.0 and points["inverted"] == 0.0


class RegionModel(torch.nn.Module):
    """Two classes; class 0's logit is 12 × (mean brightness inside the region − 0.5): only the region matters."""

    def __init__(self, region: np.ndarray) -> None:
        super().__init__()
        self.region = torch.from_numpy(region.astype(np.float32))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        inside = (images.mean(1) * self.region).sum((1, 2)) / self.region.sum()
        logit = 12.0 * (inside - 0.5)
        return torch.softmax(torch.stack([logit, -logit], 1), 1)


@pytest.fixture
def faithfulness_case():
    truth = square_truth(6)
    images = torch.from_numpy(np.repeat(truth[:, None], 3, axis=1).astype(np.float32))  # a bright square on black
    images += torch.from_numpy(RNG.normal(0, 0.02, images.shape)).float()
    return RegionModel(truth[0]), images.clamp(0, 1), maps_for(truth), torch.zeros(6, dtype=torch.long)


def test_insertion_and_deletion_rank_perfect_random_inverted(faithfulness_case):
    model, images, maps, targets = faithfulness_case
    insertion = {name: InsertionAUC()(model, images, m, targets).mean() for name, m in maps.items()}
    deletion = {name: DeletionAUC()(model, images, m, targets).mean() for name, m in maps.items()}
    assert insertion["perfect"] > insertion["random"] > insertion["inverted"]
    assert deletion["perfect"] < deletion["random"] < deletion["inverted"]
    for value in (*insertion.values(), *deletion.values()):
        assert 0.0 <= value <= 1.0


def test_insertion_curve_starts_at_the_blurred_score_and_ends_at_the_full_score(faithfulness_case):
    model, images, maps, targets = faithfulness_case
    metric = InsertionAUC(steps=8)
    metric(model, images, maps["perfect"], targets)
    full = model(images)[:, 0].double().numpy()
    np.testing.assert_allclose(metric.curves[:, -1], full, rtol=1e-6)
    assert metric.curves.shape == (6, 9)


def test_average_drop_and_increase_in_confidence(faithfulness_case):
    model, images, maps, targets = faithfulness_case
    scale = {name: m / m.max(axis=(1, 2), keepdims=True) for name, m in maps.items()}
    drop = {name: AverageDrop()(model, images, m, targets).mean() for name, m in scale.items()}
    assert drop["perfect"] < drop["random"] < drop["inverted"]
    assert drop["perfect"] >= 0.0 and drop["inverted"] <= 1.0
    increase = IncreaseInConfidence()(model, images, np.ones((6, SIZE, SIZE)), targets)
    assert np.all(increase == 0.0)  # an all-ones map changes nothing: no increase
    assert not AverageDrop.higher_is_better and IncreaseInConfidence.higher_is_better


def test_insertion_and_deletion_correlation_rank_perfect_random_inverted(faithfulness_case):
    model, images, maps, targets = faithfulness_case
    insertion, deletion = InsertionAUC(steps=8), DeletionAUC(steps=8)
    ic = {name: InsertionCorrelation(insertion)(model, images, m, targets).mean() for name, m in maps.items()}
    dc = {name: DeletionCorrelation(deletion)(model, images, m, targets).mean() for name, m in maps.items()}
    assert ic["perfect"] > 0.5 and ic["perfect"] > ic["random"] > ic["inverted"]
    assert dc["perfect"] < -0.5 and dc["perfect"] < dc["random"] < dc["inverted"]
    assert all(-1.0 <= v <= 1.0 for v in (*ic.values(), *dc.values()))
    assert InsertionCorrelation.higher_is_better and not DeletionCorrelation.higher_is_better


def test_curve_correlation_reuses_the_curve_just_drawn_for_the_same_maps(faithfulness_case):
    model, images, maps, targets = faithfulness_case
    calls = []

    def counting(batch):
        calls.append(len(batch))
        return model(batch)

    insertion = InsertionAUC(steps=4)
    insertion(counting, images, maps["perfect"], targets)
    drawn = len(calls)
    InsertionCorrelation(insertion)(counting, images, maps["perfect"], targets)
    assert len(calls) == drawn  # no second curve
    InsertionCorrelation(insertion)(counting, images, maps["random"], targets)
    assert len(calls) == 2 * drawn - 2  # other maps: a new curve, but its first and last images are remembered
    np.testing.assert_allclose(insertion.step_mass.sum(1), maps["random"].reshape(6, -1).sum(1), rtol=1e-9)


def test_row_correlation_is_pearson_and_zero_for_constant_rows():
    a = RNG.random((4, 10))
    b = 2 * a + RNG.random((4, 10)) * 0.3
    expected = [np.corrcoef(x, y)[0, 1] for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(row_correlation(a, b), expected, rtol=1e-12)
    assert row_correlation(np.ones((1, 5)), a[:1, :5])[0] == 0.0


def test_adcc_is_the_harmonic_mean_of_its_parts_and_ranks_perfect_over_inverted(faithfulness_case):
    model, images, maps, targets = faithfulness_case
    scaled = {name: m / m.max(axis=(1, 2), keepdims=True) for name, m in maps.items()}
    # a perfectly coherent explainer explains x ⊙ L(x) with L(x) itself
    adcc = {name: Adcc()(model, images, m, targets, remapped=m) for name, m in scaled.items()}
    assert adcc["perfect"].mean() > adcc["random"].mean() > adcc["inverted"].mean()
    assert all(((v >= 0) & (v <= 1)).all() for v in adcc.values())
    m = scaled["perfect"]
    drop = AverageDrop()(model, images, m, targets)
    complexity = m.reshape(6, -1).mean(1)
    expected = 3 / (1 / 1.0 + 1 / (1 - complexity) + 1 / (1 - drop))  # coherency 1
    np.testing.assert_allclose(adcc["perfect"], expected, rtol=1e-9)


def test_max_sensitivity_is_zero_for_a_steady_map_and_the_relative_change_otherwise():
    maps = RNG.random((3, SIZE, SIZE))
    metric = MaxSensitivity(radius=0.02, samples=3)
    np.testing.assert_allclose(metric(maps, [maps.copy(), maps.copy()]), 0.0)
    # unnormalised, as Yeh et al. define it: the largest L2 change, here 0.1 · ‖Φ(x)‖
    norms = np.linalg.norm(maps.reshape(3, -1), axis=1)
    np.testing.assert_allclose(metric(maps, [maps * 1.05, maps * 1.1]), 0.1 * norms, rtol=1e-9)
    relative = MaxSensitivity(radius=0.02, samples=3, normalise=True)
    np.testing.assert_allclose(relative(maps, [maps * 1.05, maps * 1.1]), 0.1, rtol=1e-9)
    images = torch.full((2, 3, 8, 8), 0.99)
    noisy = list(metric.noisy_inputs(images))
    assert len(noisy) == 3 and all(float(n.max()) <= 1.0 for n in noisy)
    assert all(float((n - images).abs().max()) <= 0.02 + 1e-7 for n in noisy)
    assert torch.equal(noisy[0], next(metric.noisy_inputs(images)))  # the same draws every time
    assert not MaxSensitivity.higher_is_better


def test_temporal_instability_is_map_change_per_image_change():
    frames = np.zeros((3, 4, 4, 3), np.float32)
    frames[1] += 0.1
    frames[2] += 0.3  # image changes: 0.1 then 0.2
    steady = np.ones((3, 4, 4), np.float32)
    assert TemporalStability()(frames, steady)["temporal_instability"] == 0.0
    moving = np.stack([np.zeros((4, 4)), np.full((4, 4), 0.5), np.full((4, 4), 0.5)]).astype(np.float32)
    result = TemporalStability()(frames, moving)
    assert result["temporal_instability"] == pytest.approx((0.5 / 0.1 + 0.0 / 0.2) / 2)
    assert result["image_change"] == pytest.approx(0.15)


def test_precision_recall_curve_of_a_perfect_map():
    truth = square_truth()
    curve = precision_recall_curve(maps_for(truth)["perfect"], truth, keep_percents=(1, 5, 10, 14, 50, 100))
    assert curve["precision"][:4] == [1.0, 1.0, 1.0, 1.0]  # the square is 14 % of the image
    assert curve["recall"][-1] == 1.0 and curve["recall"] == sorted(curve["recall"])
    assert curve["precision"][-1] == pytest.approx(144 / 1024, abs=1e-4)


def test_pointing_game_hits_within_the_papers_15_pixel_tolerance():
    """Zhang et al.: a hit when the maximum lies within 15 px of the annotation. Truth: a box at rows and columns
    40..59 of a 100×100 image; peaks 11 px right of it (hit), 21 px right (miss), inside (hit)."""
    from camstream.eval.localisation import PointingGame

    truth = np.zeros((3, 100, 100), bool)
    truth[:, 40:60, 40:60] = True
    maps = np.zeros((3, 100, 100))
    maps[0, 50, 70] = 1.0  # column 70: 11 px from column 59
    maps[1, 50, 80] = 1.0  # 21 px
    maps[2, 45, 45] = 1.0  # inside
    assert PointingGame()(maps, truth).tolist() == [1.0, 0.0, 1.0]
    assert PointingGame(tolerance=0)(maps, truth).tolist() == [0.0, 0.0, 1.0]  # the old, tolerance-free game


def test_boundary_f1_outline_is_4_connected_and_ignores_the_image_edge():
    from camstream.eval.boundary import BoundaryF1, outline

    inside = np.zeros((30, 30), bool)
    inside[10:20, 10:20] = True
    assert outline(inside).sum() == 36  # the 10×10 square's perimeter
    corner = np.zeros((30, 30), bool)
    corner[0:10, 0:10] = True  # runs off the top and the left: only row 9 and column 9 are a boundary
    assert outline(corner).sum() == 19
    assert not outline(np.ones((30, 30), bool)).any()  # the whole picture has no boundary at all
    diamond = np.zeros((5, 5), bool)
    diamond[2, 1:4] = diamond[1:4, 2] = True  # a plus sign: only its centre has all four neighbours
    assert outline(diamond).sum() == 4
    # a map equal to a truth that touches the edge scores 1; shifted 5 px (beyond the 2 px tolerance) it scores 0
    shifted = np.zeros((30, 30), bool)
    shifted[0:10, 0:15] = True
    assert BoundaryF1()(corner[None], corner[None])[0] == 1.0
    assert BoundaryF1()(shifted[None], corner[None])[0] < 0.6


def test_insertion_starts_from_petsiuks_blur():
    """RISE's insertion baseline: Gaussian blur, kernel 11, σ = 5. An impulse spreads over 11×11 pixels, no more."""
    from camstream.eval.faithfulness import InsertionAUC

    image = torch.zeros(1, 3, 31, 31)
    image[0, :, 15, 15] = 1.0
    blurred, original = InsertionAUC(4).endpoints(image)
    assert original is image
    support = (blurred[0, 0] > 0).nonzero()
    assert support[:, 0].min() == 10 and support[:, 0].max() == 20  # ±5 px: kernel 11
    centre, one_sigma = float(blurred[0, 0, 15, 15]), float(blurred[0, 0, 15, 20])
    assert one_sigma / centre == pytest.approx(np.exp(-25 / (2 * 25)), rel=1e-3)  # exp(−d²/2σ²), d = 5 = σ


def test_temporal_lag_finds_the_offset_a_smoothed_map_trails_by():
    from camstream.eval.robustness import TemporalLag
    from camstream.kernels import CamSmoother

    rng = np.random.default_rng(0)
    raw = rng.random((60, 8, 8)).astype(np.float32)
    delayed = np.concatenate([raw[:3], raw[:-3]])  # each map three frames late
    lag = TemporalLag(max_lag=8, side=8)
    assert lag(raw, raw)["lag_frames"] == pytest.approx(0.0, abs=0.02)
    assert lag(raw, delayed)["lag_frames"] == pytest.approx(3.0, abs=0.02)
    smoothed = raw.copy()
    smoother = CamSmoother(0.6)
    for cam in smoothed:
        smoother(cam)
    # α / (1 − α) = 1.5 frames; the weights beyond 8 frames (0.6⁹ of the total) are cut off
    expected = sum(k * 0.4 * 0.6**k for k in range(9)) / sum(0.4 * 0.6**k for k in range(9))
    assert lag(raw, smoothed)["lag_frames"] == pytest.approx(expected, abs=0.05)


def test_normalised_auc_is_the_auc_over_the_whole_images_score():
    from camstream.eval import DeletionAUCNormalised, InsertionAUCNormalised

    class Constant(torch.nn.Module):  # class 0 always at 0.4, whatever the pixels: every curve is flat at 0.4
        def forward(self, images):
            return torch.tensor([[0.4, 0.6]]).repeat(len(images), 1)

    images, maps = torch.rand(3, 3, 16, 16), np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    targets = torch.zeros(3, dtype=torch.long)
    insertion, deletion = InsertionAUC(steps=4), DeletionAUC(steps=4)
    assert np.allclose(insertion(Constant(), images, maps, targets), 0.4)
    assert np.allclose(InsertionAUCNormalised(insertion)(Constant(), images, maps, targets), 1.0)  # 0.4 / 0.4
    assert np.allclose(DeletionAUCNormalised(deletion)(Constant(), images, maps, targets), 1.0)
    assert InsertionAUCNormalised.higher_is_better and not DeletionAUCNormalised.higher_is_better


def test_a_perturbed_image_is_scored_once_across_thresholded_variants(faithfulness_case):
    from camstream.eval.suite import simplified
    from camstream.threshold_spec import parse_threshold

    model, images, maps, targets = faithfulness_case
    memo, fresh = InsertionAUC(steps=16), InsertionAUC(steps=16)
    for label in ("none", "10", "20"):
        variant = simplified(maps["random"], parse_threshold(label))
        remembered = memo(model, images, variant, targets)
        np.testing.assert_allclose(remembered, InsertionAUC(steps=16)(model, images, variant, targets))
        fresh.scored += 17 * len(images)
    # the blurred and whole images once for all three; a 20 % map shares 3 more steps with the full map, 10 % 1
    assert memo.scored == fresh.scored - len(images) * (2 * 2 + 3 + 1)


def test_saliency_order_puts_ties_in_one_fixed_random_order():
    from camstream.eval.faithfulness import saliency_order

    maps = RNG.random((3, 20, 30)).astype(np.float32)
    maps[maps < 0.7] = 0  # a thresholded map: most pixels tie at zero
    order, rank = saliency_order(maps)
    tie_breaker = np.random.default_rng(0).random(600)[None, :].repeat(3, 0)
    np.testing.assert_array_equal(order, np.lexsort((tie_breaker, -maps.reshape(3, -1)), axis=1))  # by hand
    np.testing.assert_array_equal(np.take_along_axis(rank, order, axis=1), np.arange(600)[None].repeat(3, 0))
    zeros = order[0][maps.reshape(3, -1)[0][order[0]] == 0]
    assert not np.array_equal(zeros, np.sort(zeros))  # not the top rows first


def test_a_masked_image_is_scored_once_for_average_drop_increase_and_adcc(faithfulness_case):
    model, images, maps, targets = faithfulness_case
    seen: list[torch.Tensor] = []

    class Scorer:  # eval hands its scorer's bound method, a new object at each attribute access
        def predict(self, batch: torch.Tensor) -> torch.Tensor:
            seen.append(batch)
            return model(batch)

    scorer = Scorer()
    counting = scorer.predict
    perfect = maps["perfect"] / maps["perfect"].max(axis=(1, 2), keepdims=True)
    drop = AverageDrop()(scorer.predict, images, perfect, targets)
    IncreaseInConfidence()(scorer.predict, images, perfect, targets)
    Adcc()(scorer.predict, images, perfect, targets, perfect)
    masked = [batch for batch in seen if not torch.equal(batch, images)]
    assert len(masked) == 1  # the image × map batch went through the model once, not three times
    np.testing.assert_allclose(drop, AverageDrop()(model, images, perfect, targets))  # and gave the same scores
    AverageDrop()(counting, images, maps["random"], targets)  # other maps are scored afresh
    assert len([batch for batch in seen if not torch.equal(batch, images)]) == 2


def test_the_summary_interval_is_students_t_on_the_images():
    from camstream.eval.report import mean_interval

    mean, half = mean_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and half == pytest.approx(3.182446 * np.std([1, 2, 3, 4], ddof=1) / 2, rel=1e-5)
    assert mean_interval([0.7]) == (0.7, None)


def test_pointing_at_the_image_scale_measures_its_15_px_on_the_original():
    """Issue 29, hand-computed: a 1000×1000 photo on a 100×100 input (stretch), its truth the square of rows and
    columns 500–599. The map's maximum at input pixel (47, 55) lies over original pixel (475, 555): 25 px above
    the truth, a miss at Zhang et al.'s 15 px. On the input the truth starts at row 50, 3 px away: a hit there —
    the old reading, which credited misses by up to 10× on large photos. In letterbox padding it is a miss."""
    from camstream.eval.localisation import PointingGame
    from camstream.model.preprocess import Placement, resize_mask

    truth = np.zeros((1000, 1000), bool)
    truth[500:600, 500:600] = True
    heat = np.zeros((1, 100, 100), np.float32)
    heat[0, 47, 55] = 1.0
    pointing = PointingGame(15.0)
    placement = Placement.of((1000, 1000), (100, 100), "stretch")
    assert placement.frame_point(47, 55) == (475, 555)
    assert pointing.at_image_scale(heat, [pointing.near_truth(truth)], [placement]).tolist() == [0.0]
    assert pointing(heat, resize_mask(truth, (100, 100))[None]).tolist() == [1.0]  # the input's reading
    heat[0, 47, 55], heat[0, 52, 55] = 0.0, 1.0  # over original row 525: inside the truth
    assert pointing.at_image_scale(heat, [pointing.near_truth(truth)], [placement]).tolist() == [1.0]
    wide = Placement.of((500, 1000), (100, 100), "letterbox")  # the photo fills rows 25–74 of the input
    heat[0, 52, 55], heat[0, 10, 50] = 0.0, 1.0
    assert wide.frame_point(10, 50) is None
    assert pointing.at_image_scale(heat, [np.ones((500, 1000), bool)], [wide]).tolist() == [0.0]


def test_a_normalised_auc_leaves_out_images_the_model_scores_near_zero():
    """Issue 29: divided by a whole-image score of 0.0024, one image's IAUC/p read 9.6 and outweighed the rest.
    Hand-computed: three images whose class scores 0.4, 0.4 and 0.01 everywhere; the first two read 0.4 / 0.4 = 1,
    the third is below the 0.05 floor and left out (NaN; null in eval.json), so the mean is 1.0, not 14."""
    from camstream.eval import InsertionAUCNormalised
    from camstream.eval.suite import listed, mean_of

    class ThirdUnsure(torch.nn.Module):  # class 0 at 0.4 for the first two images, 0.01 for the third
        def forward(self, images):
            first = torch.where(images[:, 0, 0, 0] < 0.5, 0.4, 0.01)
            return torch.stack([first, 1 - first], 1)

    images = torch.zeros(3, 3, 16, 16)
    images[2] = 1.0
    maps = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    normalised = InsertionAUCNormalised(InsertionAUC(steps=4))(ThirdUnsure(), images, maps,
                                                               torch.zeros(3, dtype=torch.long))
    assert np.allclose(normalised[:2], 1.0) and np.isnan(normalised[2])
    assert InsertionAUCNormalised.FLOOR == 0.05  # above the third image's 0.01
    assert mean_of(normalised) == 1.0 and listed(normalised) == [1.0, 1.0, None]
    assert mean_of(np.array([np.nan])) is None
