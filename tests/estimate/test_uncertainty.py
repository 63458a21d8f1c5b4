import math

import pytest

from greenlm.errors import ConfigError
from greenlm.estimate.uncertainty import Range, add, combine


def test_exact_inputs_give_no_band():
    r = combine([(Range.exact(2.0), 1), (Range.exact(3.0), 1)])
    assert (r.low, r.value, r.high) == (6.0, 6.0, 6.0)


def test_single_factor_keeps_its_own_range():
    r = combine([(Range(10.0, 8.0, 15.0), 1), (Range.exact(2.0), 1)])
    assert r.value == pytest.approx(20.0)
    assert r.low == pytest.approx(16.0)
    assert r.high == pytest.approx(30.0)


def test_inverse_factor_flips_the_band():
    # energy ~ 1/MFU: the low MFU gives the high energy
    r = combine([(Range(0.4, 0.3, 0.5), -1)])
    assert r.high == pytest.approx(1 / 0.3)
    assert r.low == pytest.approx(1 / 0.5)


def test_independent_factors_combine_narrower_than_worst_case():
    a = Range(1.0, 0.8, 1.25)
    r = combine([(a, 1), (a, 1)])
    worst = 1.25 * 1.25
    assert 1.25 < r.high < worst
    assert r.high == pytest.approx(math.exp(math.sqrt(2) * math.log(1.25)))


def test_inconsistent_range_is_rejected():
    with pytest.raises(ConfigError, match="low <= value <= high"):
        Range(1.0, 2.0, 3.0)


def test_add_sums_parts_and_bounds():
    r = add(Range(1, 0.5, 2), Range(3, 3, 3))
    assert (r.low, r.value, r.high) == (3.5, 4, 5)
