"""The learning-rate schedule: the original's MultiFactorScheduler, counted globally, and its resume property."""
from __future__ import annotations

import pytest

import resnet_toolkit  # noqa: F401
from resnet_toolkit.schedule import Schedule, learning_rate, parse_steps, rate_at_epoch


def test_matches_mxnet_multifactor_scheduler_of_a_fresh_run():
    """Fresh run: identical to mx.lr_scheduler.MultiFactorScheduler(step=[s * epoch_size]) at every update."""
    import mxnet as mx

    epoch_size, steps = 7, (3, 5)
    reference = mx.lr_scheduler.MultiFactorScheduler(step=[s * epoch_size for s in steps], factor=0.1, base_lr=0.1)
    for num_update in range(1, 8 * epoch_size + 1):
        assert learning_rate(num_update, 0.1, steps, epoch_size) == pytest.approx(reference(num_update), rel=1e-12)


def test_first_update_of_a_step_epoch_is_reduced():
    # epoch_size 10: epoch 3 (0-based) holds updates 31..40; its first update is the first at the reduced rate.
    assert learning_rate(30, 0.1, (3,), 10) == 0.1
    assert learning_rate(31, 0.1, (3,), 10) == pytest.approx(0.01)
    assert rate_at_epoch(2, 0.1, (3,)) == 0.1
    assert rate_at_epoch(3, 0.1, (3,)) == pytest.approx(0.01)


def test_resume_continues_the_same_curve_at_every_update():
    """A run resumed at epoch b with lr = the rate the uninterrupted run would use next gives the same rate at every
    later update, for resume points before, at and after each step (the original's begin_epoch shift)."""
    epoch_size, steps, factor = 13, (4, 9, 11), 0.2
    full = Schedule("step", 0.1, epoch_size, 15, steps, factor)
    for begin in range(0, 14):
        next_lr = full(begin * epoch_size + 1)
        resumed = Schedule("step", next_lr, epoch_size, 15, steps, factor, begin_epoch=begin)
        for num_update in range(begin * epoch_size + 1, 15 * epoch_size):
            assert resumed(num_update) == pytest.approx(full(num_update), rel=1e-12), (begin, num_update)


def test_retrain_with_a_new_lr_applies_only_later_steps():
    """The original's README case: ImageNet steps 30,60,90, retrain at epoch 70 with --lr 0.0005: the rate is
    0.0005 until epoch 90, then 0.00005; the steps at 30 and 60 are already contained in the new --lr."""
    epoch_size = 100
    assert learning_rate(70 * epoch_size + 1, 0.0005, (30, 60, 90), epoch_size, begin_epoch=70) == 0.0005
    assert learning_rate(90 * epoch_size, 0.0005, (30, 60, 90), epoch_size, begin_epoch=70) == 0.0005
    assert learning_rate(90 * epoch_size + 1, 0.0005, (30, 60, 90), epoch_size,
                         begin_epoch=70) == pytest.approx(0.00005)


@pytest.mark.parametrize("text, expected", [("120,160", (120, 160)), ("30, 60,90", (30, 60, 90)), ("", ())])
def test_parse_steps(text, expected):
    assert parse_steps(text) == expected


@pytest.mark.parametrize("text", ["160,120", "0,10", "10,10", "a,b"])
def test_parse_steps_rejects(text):
    with pytest.raises(ValueError):
        parse_steps(text)
