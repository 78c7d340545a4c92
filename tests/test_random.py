"""The NumPy twin of csrc/random.h: splitmix64's known outputs, and counter-based draws."""

import numpy as np

from fcnn import reference


def test_mixer_gives_splitmix64s_published_outputs():
    # splitmix64 seeded with 0 outputs mix(1 gamma), mix(2 gamma), ...; _mix64 adds one gamma.
    gamma = 0x9E3779B97F4A7C15
    outputs = [int(reference._mix64((k * gamma) % 2**64)) for k in range(3)]
    assert outputs == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_draws_depend_on_key_and_index_only():
    keys = reference.random_key(7, np.arange(4))
    assert len(set(keys.tolist())) == 4
    together = reference.random_uniform(keys[:, None], np.arange(1000)[None, :])
    one_by_one = [reference.random_uniform(keys[2], index) for index in (999, 0, 500)]
    assert together[2, [999, 0, 500]].tolist() == [float(value) for value in one_by_one]
    assert reference.random_key(8, 0) != keys[0]


def test_uniform_draws_fill_zero_to_one():
    draws = reference.random_uniform(reference.random_key(0, 0), np.arange(100_000))
    assert draws.dtype == np.float64 and draws.min() >= 0 and draws.max() < 1
    # Mean and the ten deciles of 100,000 uniform draws, at about 5 standard errors.
    assert abs(draws.mean() - 0.5) < 5 * (1 / 12 / 100_000) ** 0.5
    counts = np.histogram(draws, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts - 10_000) < 5 * 95)
