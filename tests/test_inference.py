"""The report's statistics (experiments.reporting.inference) against closed forms, published values and exhaustive
enumeration: Wilson intervals (Newcombe 1998), the logit-t interval, the paired t test, the exact sign-flip p and
its floor, and Holm's adjustment on a textbook family."""

from __future__ import annotations

import itertools
import math

import pytest

from experiments.reporting.inference import (
    BOOTSTRAP_MIN_N,
    CONFIDENCE,
    Interval,
    PairedTest,
    holm,
    mean_iou,
    paired_test,
    per_image_miou_interval,
    seed_interval,
    seed_interval_method,
    sign_flip_floor,
    sign_flip_min_seeds,
    sign_flip_p,
    wilson_interval,
    with_holm,
)

Z95 = 1.959964  # z_{0.975}
T2 = 4.302653  # t_{0.975, 2}


def expit(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_confidence_is_the_reports() -> None:
    from experiments.reporting.stats import CONFIDENCE as REPORT_CONFIDENCE

    assert CONFIDENCE == REPORT_CONFIDENCE == 0.95


# ------------------------------------------------------------------------------------------------- Wilson


def test_wilson_matches_its_closed_formula_by_hand() -> None:
    # 90 of 100: p = 0.9, z²/N = 0.038415; centre = (0.9 + 0.019207) / 1.038415 = 0.885206,
    # half = z / 1.038415 · √(0.0009 + 0.00009604) = 1.887436 · 0.031560 = 0.059568
    interval = wilson_interval(90, 100)
    z2 = Z95**2
    centre = (0.9 + z2 / 200) / (1 + z2 / 100)
    half = Z95 / (1 + z2 / 100) * math.sqrt(0.9 * 0.1 / 100 + z2 / (4 * 100**2))
    assert interval.method == "Wilson"
    assert interval.low == pytest.approx(centre - half, abs=1e-6) == pytest.approx(0.825638, abs=1e-5)
    assert interval.high == pytest.approx(centre + half, abs=1e-6) == pytest.approx(0.944774, abs=1e-5)


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0),
])
def test_wilson_matches_newcombes_published_table(k: int, n: int, low: float, high: float) -> None:
    """Newcombe, Statistics in Medicine 17 (1998), Table I, method 3 (score interval without continuity
    correction): the extremes 0/20 and 29/29 included, where the Wald interval collapses."""
    interval = wilson_interval(k, n)
    assert (interval.low, interval.high) == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


def test_wilson_without_a_count_has_no_interval() -> None:
    assert wilson_interval(3, 0) == Interval(None, None, "Wilson")
    assert wilson_interval(3, 0).half_width is None


# ------------------------------------------------------------------------------------------ seed intervals


def test_logit_t_near_one_at_three_seeds_stays_inside_and_equals_its_formula() -> None:
    values = [0.97, 0.985, 0.995]
    z = [math.log(v / (1 - v)) for v in values]
    mean, sd = sum(z) / 3, math.sqrt(sum((x - sum(z) / 3) ** 2 for x in z) / 2)
    interval = seed_interval(values, bounded=True)
    assert interval.method == "logit-t"
    assert interval.low == pytest.approx(expit(mean - T2 * sd / math.sqrt(3)), rel=1e-6)
    assert interval.high == pytest.approx(expit(mean + T2 * sd / math.sqrt(3)), rel=1e-6)
    assert 0.0 < interval.low < min(values) and max(values) < interval.high < 1.0
    # the Student-t interval of the same values leaves [0, 1]
    t = seed_interval(values, bounded=False)
    assert t.method == "t" and t.high > 1.0


def test_values_at_exactly_one_move_epsilon_inside() -> None:
    values, eps = [0.98, 0.99, 1.0], 0.5 / 1000  # half a test image of 1000
    z = [math.log(v / (1 - v)) for v in (0.98, 0.99, 1 - eps)]
    mean, sd = sum(z) / 3, math.sqrt(sum((x - sum(z) / 3) ** 2 for x in z) / 2)
    interval = seed_interval(values, bounded=True, epsilon=eps)
    assert interval.high == pytest.approx(expit(mean + T2 * sd / math.sqrt(3)), rel=1e-6) and interval.high < 1.0
    assert interval.low == pytest.approx(expit(mean - T2 * sd / math.sqrt(3)), rel=1e-6) and interval.low > 0.0
    assert seed_interval([1.0, 1.0, 1.0], bounded=True) == Interval(1.0, 1.0, "logit-t")  # no spread: the point


def test_unbounded_is_the_student_t_interval_and_few_values_none() -> None:
    interval = seed_interval([0.90, 0.92, 0.94], bounded=False)  # mean 0.92, s 0.02
    half = T2 * 0.02 / math.sqrt(3)
    assert (interval.low, interval.high, interval.method) == (pytest.approx(0.92 - half), pytest.approx(0.92 + half),
                                                              "t")
    assert seed_interval([0.5], bounded=True) == Interval(None, None, "logit-t")
    assert seed_interval([], bounded=False) == Interval(None, None, "t")
    assert seed_interval([55.0, 60.0, 65.0], bounded=True).method == "t"  # a percentage cannot be bounded to [0, 1]


def test_many_seeds_use_the_bca_bootstrap_inside_the_data_range() -> None:
    values = [0.85 + 0.005 * (i % 7) + 0.002 * (i % 3) for i in range(BOOTSTRAP_MIN_N)]
    interval = seed_interval(values, bounded=True)
    mean = sum(values) / len(values)
    assert interval.method == "BCa bootstrap" == seed_interval_method(BOOTSTRAP_MIN_N, True)
    assert min(values) <= interval.low < mean < interval.high <= max(values)
    assert seed_interval(values, bounded=True) == interval  # a fixed seed: the same numbers every time
    assert seed_interval_method(BOOTSTRAP_MIN_N - 1, True) == "logit-t" and seed_interval_method(50, False) == "t"


# ------------------------------------------------------------------------------------------- paired tests


def test_paired_t_p_against_scipy_and_the_two_df_closed_form() -> None:
    stats = pytest.importorskip("scipy.stats")
    arm, base = [0.74, 0.83, 0.95, 0.80], [0.70, 0.80, 0.90, 0.79]
    test = paired_test([a - b for a, b in zip(arm, base, strict=True)])
    assert test.p_value == pytest.approx(float(stats.ttest_rel(arm, base).pvalue), rel=1e-9)
    assert test.n == 4 and test.mean == pytest.approx(0.0325) and test.method == "paired t"
    # 3 pairs, d = 0.04, 0.03, 0.05: t = 0.04/(0.01/√3) = 6.9282 on 2 df, P(|T| > t) = 1 − t/√(2 + t²)
    three = paired_test([0.04, 0.03, 0.05])
    t = 0.04 / (0.01 / math.sqrt(3))
    assert three.p_value == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9) == pytest.approx(0.0202, abs=1e-4)
    half = T2 * 0.01 / math.sqrt(3)
    assert (three.low, three.high) == (pytest.approx(0.04 - half), pytest.approx(0.04 + half)) and three.resolved


def test_paired_test_with_too_few_pairs_or_no_spread() -> None:
    assert paired_test([]) == PairedTest(0, None, None, None, None, None)
    one = paired_test([0.02])
    assert (one.n, one.mean, one.low, one.p_value, one.p_exact, one.resolved) == (1, 0.02, None, None, None, False)
    same = paired_test([0.01, 0.01, 0.01])  # a deterministic difference
    assert (same.low, same.high, same.p_value) == (0.01, 0.01, 0.0) and same.resolved
    assert paired_test([0.0, 0.0]).p_value == 1.0 and not paired_test([0.0, 0.0]).resolved


def test_a_bounded_difference_is_cut_to_where_differences_lie() -> None:
    # sigmoid − relu on 3 seeds: -0.861, -0.327, -0.855 -> the t interval reaches below -1, which no difference can
    d = [0.101 - 0.962, 0.644 - 0.971, 0.10 - 0.955]
    free, cut = paired_test(d), paired_test(d, bounds=(-1.0, 1.0))
    assert free.low < -1.0 and cut.low == -1.0 and cut.high == free.high and cut.p_value == free.p_value


def enumerate_sign_flips(d: list[float]) -> float:
    """The definition, spelled out: the share of the 2^n sign patterns whose |sum| reaches the observed one."""
    observed = abs(sum(d))
    hits = sum(abs(sum(s * x for s, x in zip(signs, d, strict=True))) >= observed - 1e-12
               for signs in itertools.product((1, -1), repeat=len(d)))
    return hits / 2 ** len(d)


@pytest.mark.parametrize("d", [[0.3, -0.1, 0.2, 0.4], [0.05, 0.01, -0.02, 0.03, 0.04], [1.0, -1.0, 2.0, 0.5],
                               [0.02, 0.02, -0.02, 0.02, 0.01, 0.03, -0.01]])
def test_sign_flip_p_by_exhaustive_enumeration(d: list[float]) -> None:
    assert sign_flip_p(d) == pytest.approx(enumerate_sign_flips(d), abs=1e-15)
    assert paired_test(d).p_exact == sign_flip_p(d)


def test_sign_flip_hand_case_and_floor() -> None:
    # d = 0.3, -0.1, 0.2, 0.4 (sum 0.8): of the 16 patterns only (+,+,+,+) = 1.0, (+,-,+,+) = 0.8 and their
    # mirrors reach |sum| >= 0.8, so p = 4/16
    assert sign_flip_p([0.3, -0.1, 0.2, 0.4]) == 0.25
    for n in range(2, 12):
        assert sign_flip_floor(n) == 2.0 ** (1 - n)
        assert sign_flip_p([0.01 * (i + 1) for i in range(n)]) == pytest.approx(sign_flip_floor(n))
    assert sign_flip_p([0.1]) is None and sign_flip_floor(1) == 1.0


def test_seed_floor_of_the_exact_test() -> None:
    assert sign_flip_floor(5) == 0.0625 > 0.05 >= sign_flip_floor(6) == 0.03125
    assert sign_flip_min_seeds() == 6  # no exact p < 0.05 below 6 seeds
    assert sign_flip_min_seeds(0.05, 3) == 7  # Holm's first step over 3 comparisons: 0.05/3 = 0.0167 >= 2^-6
    assert sign_flip_min_seeds(0.05, 2) == 7 and sign_flip_min_seeds(0.05, 4) == 8
    with pytest.raises(ValueError):
        sign_flip_min_seeds(0.0)


# ---------------------------------------------------------------------------------------------------- Holm


def test_holm_on_a_textbook_family() -> None:
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, max(0.04·1, 0.06) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == [pytest.approx(0.03), pytest.approx(0.06), pytest.approx(0.06),
                                               pytest.approx(0.02)]
    assert holm([0.01, None, 0.04]) == [pytest.approx(0.02), None, pytest.approx(0.04)]  # None is no test
    assert holm([0.5, 0.9]) == [pytest.approx(1.0), pytest.approx(1.0)]  # capped at 1
    assert holm([]) == [] and holm([None]) == [None]


def test_with_holm_fills_the_family() -> None:
    tests = [paired_test([0.04, 0.03, 0.05]), paired_test([0.1]), paired_test([0.01, -0.02, 0.015])]
    adjusted = with_holm(tests)
    assert [t.p_value for t in adjusted] == [t.p_value for t in tests]
    ps = holm([t.p_value for t in tests])
    assert [t.p_holm for t in adjusted] == ps and adjusted[1].p_holm is None
    assert adjusted[0].p_holm == pytest.approx(2 * tests[0].p_value)  # the smaller of a family of two, doubled


# ------------------------------------------------------------------------------------ mIoU over test images


def test_mean_iou_leaves_out_classes_with_an_empty_union() -> None:
    assert mean_iou([2, 0, 3], [4, 0, 6]) == pytest.approx(0.5)  # class 1 neither present nor predicted
    assert mean_iou([0, 0], [0, 0]) is None


def test_per_image_bootstrap_of_miou() -> None:
    inter = [[50, 5], [40, 0], [45, 8], [60, 2], [30, 6]]
    union = [[60, 10], [50, 4], [55, 10], [65, 5], [40, 9]]
    point = mean_iou([sum(r[k] for r in inter) for k in range(2)], [sum(r[k] for r in union) for k in range(2)])
    interval = per_image_miou_interval(inter, union)
    assert interval.method == "per-image bootstrap"
    assert 0.0 <= interval.low < point < interval.high <= 1.0
    assert per_image_miou_interval(inter, union) == interval  # a fixed seed
    # identical images: every resample has the same mIoU, so no noise at all
    same = per_image_miou_interval([[3, 1]] * 4, [[4, 2]] * 4)
    assert same.low == pytest.approx(mean_iou([3, 1], [4, 2])) == pytest.approx(same.high)
    assert per_image_miou_interval([[3, 1]], [[4, 2]]).low is None  # one image: no interval


def test_per_image_counts_sum_to_torchmetrics_iou() -> None:
    torch = pytest.importorskip("torch")
    from torchmetrics.classification import MulticlassJaccardIndex

    from experiments.tasks.segmentation import per_image_counts

    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 3, (4, 6, 5), generator=generator)
    targets[0, 0, :] = 255  # unlabelled pixels count nowhere
    preds = torch.randint(0, 3, (4, 6, 5), generator=generator)
    counts = per_image_counts(preds, targets, 3)
    assert counts.shape == (4, 2, 3)
    image = counts[1]  # one image by hand: |pred ∩ target| and |pred ∪ target| per class
    for c in range(3):
        assert image[0, c] == ((preds[1] == c) & (targets[1] == c)).sum()
        assert image[1, c] == ((preds[1] == c) | (targets[1] == c)).sum()
    metric = MulticlassJaccardIndex(3, average="none", ignore_index=255)
    metric.update(torch.nn.functional.one_hot(preds, 3).permute(0, 3, 1, 2).float(), targets)
    summed = counts.sum(dim=0)
    assert (summed[0] / summed[1]).tolist() == pytest.approx(metric.compute().tolist())
