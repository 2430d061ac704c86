"""Learning-rate schedules against hand-derived rate sequences, state, errors, and torch when available."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bpcore import Network
from bpcore.layers import Dense
from bpcore.optim import (
    SGD,
    CosineAnnealingLR,
    ExponentialLR,
    LinearWarmup,
    ReduceLROnPlateau,
    StepLR,
)


def optimizer(lr: float = 1.0) -> SGD:
    return SGD(Network([Dense(2, 1)], dtype="float64", seed=0).parameters(), lr=lr)


def rates(schedule, opt: SGD, epochs: int) -> list[float]:
    """The rate at epoch 0 (set on creation) and after each of ``epochs`` steps."""
    seen = [opt.lr]
    for _ in range(epochs):
        opt.step()
        schedule.step()
        seen.append(opt.lr)
    return seen


def test_step_lr():
    opt = optimizer(1.0)
    got = rates(StepLR(opt, step_size=3, gamma=0.5), opt, 8)
    np.testing.assert_allclose(got, [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25], rtol=1e-15)


def test_exponential_lr():
    opt = optimizer(2.0)
    got = rates(ExponentialLR(opt, gamma=0.9), opt, 5)
    np.testing.assert_allclose(got, [2.0, 1.8, 1.62, 1.458, 1.3122, 1.18098], rtol=1e-14)


def test_cosine_annealing_lr_follows_the_closed_form_and_continues_as_a_wave():
    opt = optimizer(1.0)
    got = rates(CosineAnnealingLR(opt, T_max=4, eta_min=0.1), opt, 10)
    expected = [0.1 + 0.9 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(11)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    # hand values: base, halfway (base + eta_min) / 2, minimum at T_max, back up after it
    hand = [1.0, 0.55, 0.1, 0.55, 1.0]
    np.testing.assert_allclose([got[0], got[2], got[4], got[6], got[8]], hand, rtol=1e-12)


def test_linear_warmup():
    opt = optimizer(1.0)
    got = rates(LinearWarmup(opt, warmup_steps=4, start_factor=0.2), opt, 6)
    np.testing.assert_allclose(got, [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0], rtol=1e-14)
    opt = optimizer(0.3)
    got = rates(LinearWarmup(opt, warmup_steps=2), opt, 3)  # torch's default start factor 1/3
    np.testing.assert_allclose(got, [0.1, 0.2, 0.3, 0.3], rtol=1e-14)


def test_schedules_chain_like_torch():
    opt = optimizer(1.0)
    warmup, decay = LinearWarmup(opt, warmup_steps=2, start_factor=0.5), ExponentialLR(opt, gamma=0.5)
    seen = [opt.lr]
    for _ in range(4):
        warmup.step()
        decay.step()
        seen.append(opt.lr)
    # (warm-up factor) * gamma ** epoch, both measured from the same base rate
    np.testing.assert_allclose(seen, [0.5, 0.75 * 0.5, 1.0 * 0.25, 0.125, 0.0625], rtol=1e-14)
    assert warmup.base_lr == decay.base_lr == opt.initial_lr == 1.0


def test_get_last_lr_is_a_one_element_list():
    opt = optimizer(1.0)
    schedule = StepLR(opt, step_size=1, gamma=0.5)
    assert schedule.get_last_lr() == [1.0]
    schedule.step()
    assert schedule.get_last_lr() == [0.5] and opt.lr == 0.5


# --- ReduceLROnPlateau -----------------------------------------------------------------
def plateau_rates(metrics, lr: float = 1.0, **kwargs) -> list[float]:
    opt = optimizer(lr)
    schedule = ReduceLROnPlateau(opt, **kwargs)
    assert opt.lr == lr  # no change on creation
    seen = []
    for metric in metrics:
        schedule.step(metric)
        seen.append(opt.lr)
    assert schedule.get_last_lr() == [opt.lr]
    return seen


def test_plateau_reduces_after_patience_bad_epochs():
    got = plateau_rates([5, 4, 4, 4, 3, 3, 3], patience=1, factor=0.5, threshold=0)
    assert got == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]


def test_plateau_cooldown_ignores_bad_epochs():
    got = plateau_rates([1] * 7, patience=0, factor=0.5, cooldown=2)
    assert got == [1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]


def test_plateau_relative_threshold_needs_a_real_improvement():
    # 0.99995 is not below 1 * (1 - 1e-4): a bad epoch; 0.9 is
    got = plateau_rates([1.0, 0.99995, 0.9, 0.89999, 0.89999], patience=1, factor=0.1)
    np.testing.assert_allclose(got, [1, 1, 1, 1, 0.1])


def test_plateau_max_mode_with_absolute_threshold():
    got = plateau_rates([1.0, 1.05, 1.2, 1.25, 1.29], mode="max", threshold_mode="abs", threshold=0.1,
                        patience=1, factor=0.5)
    assert got == [1, 1, 1, 1, 0.5]


def test_plateau_min_lr_and_eps():
    got = plateau_rates([1] * 5, patience=0, factor=0.1, min_lr=0.05)
    np.testing.assert_allclose(got, [1, 0.1, 0.05, 0.05, 0.05])
    got = plateau_rates([1] * 3, lr=1e-8, patience=0, factor=0.5)  # a change of at most eps is skipped
    assert got == [1e-8, 1e-8, 1e-8]


def test_plateau_accepts_zero_dimensional_arrays_and_rejects_non_numbers():
    opt = optimizer(1.0)
    schedule = ReduceLROnPlateau(opt, patience=0)
    schedule.step(np.asarray(1.0))
    with pytest.raises(TypeError, match="metric: expected a number"):
        schedule.step("low")
    assert schedule.last_epoch == 1


# --- state --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda o: StepLR(o, 2, 0.5),
        lambda o: ExponentialLR(o, 0.8),
        lambda o: CosineAnnealingLR(o, 5, 0.01),
        lambda o: LinearWarmup(o, 4, 0.25),
    ],
    ids=["step", "exponential", "cosine", "warmup"],
)
def test_state_dict_resumes_the_same_sequence(make):
    opt = optimizer(1.0)
    schedule = make(opt)
    rates(schedule, opt, 3)
    saved, saved_opt = schedule.state_dict(), opt.state_dict()
    expected = rates(schedule, opt, 4)
    resumed_opt = optimizer(1.0)
    resumed = make(resumed_opt)
    resumed_opt.load_state_dict(saved_opt)
    resumed.load_state_dict(saved)
    assert rates(resumed, resumed_opt, 4) == expected


def test_plateau_state_dict_round_trip_and_mismatch():
    opt = optimizer(1.0)
    schedule = ReduceLROnPlateau(opt, patience=1)
    for metric in (3, 2, 2):
        schedule.step(metric)
    state = schedule.state_dict()
    other = ReduceLROnPlateau(optimizer(1.0), patience=1)
    other.load_state_dict(state)
    assert other.best == 2 and other.num_bad_epochs == 1 and other.last_epoch == 3
    with pytest.raises(ValueError, match="expected the keys"):
        other.load_state_dict(StepLR(optimizer(), 2).state_dict())


# --- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda o: StepLR(object(), 2), TypeError, "object is not an Optimizer"),
        (lambda o: StepLR(o, 0), ValueError, "step_size: expected a positive integer, got 0"),
        (lambda o: StepLR(o, 2.5), TypeError, "step_size: expected a positive integer"),
        (lambda o: StepLR(o, 2, gamma=-0.1), ValueError, "gamma: expected a finite number > 0"),
        (
            lambda o: ExponentialLR(o, gamma="0.9"),
            TypeError,
            "gamma: expected a finite number > 0, got '0.9'",
        ),
        (lambda o: CosineAnnealingLR(o, T_max=0), ValueError, "T_max: expected a positive integer"),
        (lambda o: CosineAnnealingLR(o, T_max=3, eta_min=-1), ValueError, "eta_min: expected a finite"),
        (lambda o: LinearWarmup(o, 0), ValueError, "warmup_steps: expected a positive integer"),
        (lambda o: LinearWarmup(o, 3, start_factor=0), ValueError, "Starting multiplicative factor"),
        (lambda o: LinearWarmup(o, 3, start_factor=1.5), ValueError, "Starting multiplicative factor"),
        (lambda o: ReduceLROnPlateau(o, factor=1.0), ValueError, r"Factor should be < 1.0"),
        (lambda o: ReduceLROnPlateau(o, factor=0), ValueError, r"factor: expected a number in \(0, 1\)"),
        (
            lambda o: ReduceLROnPlateau(o, mode="avg"),
            ValueError,
            "mode: expected one of 'min', 'max', got 'avg'",
        ),
        (
            lambda o: ReduceLROnPlateau(o, threshold_mode="pct"),
            ValueError,
            "threshold_mode: expected one of 'rel', 'abs', got 'pct'",
        ),
        (
            lambda o: ReduceLROnPlateau(o, patience=-1),
            ValueError,
            "patience: expected a non-negative integer, got -1",
        ),
        (lambda o: ReduceLROnPlateau(o, min_lr=-1), ValueError, "min_lr: expected a finite number >= 0"),
    ],
)
def test_bad_arguments_raise_one_clear_error(make, error, match):
    opt = optimizer(1.0)
    with pytest.raises(error, match=match):
        make(opt)
    assert opt.lr == 1.0 and opt.initial_lr is None


# --- optional cross-check with PyTorch -------------------------------------------------------
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda o: StepLR(o, 3, 0.5), lambda L, t: L.StepLR(t, 3, 0.5)),
        (lambda o: ExponentialLR(o, 0.9), lambda L, t: L.ExponentialLR(t, 0.9)),
        (lambda o: CosineAnnealingLR(o, 7, 0.01), lambda L, t: L.CosineAnnealingLR(t, 7, 0.01)),
        (lambda o: LinearWarmup(o, 5, 0.1), lambda L, t: L.LinearLR(t, 0.1, total_iters=5)),
    ],
    ids=["step", "exponential", "cosine", "warmup"],
)
def test_matches_torch_when_available(ours, theirs):
    torch = pytest.importorskip("torch")
    opt = optimizer(0.5)
    torch_opt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.5)
    schedule, torch_schedule = ours(opt), theirs(torch.optim.lr_scheduler, torch_opt)
    got, expected = [opt.lr], [torch_opt.param_groups[0]["lr"]]
    for _ in range(20):
        torch_opt.step()
        schedule.step()
        torch_schedule.step()
        got.append(opt.lr)
        expected.append(torch_opt.param_groups[0]["lr"])
    np.testing.assert_allclose(got, expected, rtol=1e-15)
