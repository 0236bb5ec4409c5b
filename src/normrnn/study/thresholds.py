"""The thresholds that turn a run's numbers into the report's words (saturated, learned, plateaued), and the two
curve readings that use them. Plain Python: the report side reads them without loading torch."""

from __future__ import annotations

__all__ = ["LEARN_FRACTION", "LEARN_WINDOW", "PLATEAU_GAIN", "SATURATED", "plateaued", "steps_to_learn"]

SATURATED = 0.01  # a sigmoid gate below this, or above 1 - this, counts as saturated
LEARN_FRACTION = 0.9  # a run has learned once its smoothed training loss is below this × the no-learning floor
LEARN_WINDOW = 10  # steps in the trailing mean that smooths the training loss
PLATEAU_GAIN = 0.02  # a run has plateaued when its last quarter of steps improved validation MSE by less than this


def steps_to_learn(losses: list[float | None], floor: float, *, fraction: float = LEARN_FRACTION,
                   window: int = LEARN_WINDOW) -> int | None:
    """The first optimizer step after which the trailing mean of ``window`` training losses is below
    ``floor - (1 - fraction) × |floor|`` (``fraction × floor`` for a positive loss; ``floor``: the best no-learning
    predictor's loss, in the same units, which a log-space loss may make negative); ``None`` if never.

    ``losses[i]`` is the loss of the batch seen after ``i`` optimizer steps, so the answer counts steps taken.

    Example::

        >>> steps_to_learn([1.0] * 5 + [0.7] * 20, floor=1.0, window=4)  # (1 + 1 + 0.7 + 0.7) / 4 < 0.9
        6
        >>> steps_to_learn([1.0] * 20, floor=1.0) is None
        True
    """
    for i in range(len(losses)):
        recent = losses[max(0, i - window + 1) : i + 1]
        if len(recent) < min(window, len(losses)) or any(v is None for v in recent):
            continue
        if sum(recent) / len(recent) < floor - (1 - fraction) * abs(floor):  # type: ignore[arg-type]  # no None: above
            return i
    return None


def plateaued(val_curve: list[float], val_steps: list[int], *, gain: float = PLATEAU_GAIN) -> bool | None:
    """Whether a run's validation MSE had stopped improving: over the last quarter of its steps (from its last
    validation at or before 75% of the final step) it fell by less than ``gain`` (relative). ``None`` with fewer than
    two validations, or none before the last quarter.

    Example::

        >>> plateaued([50.0, 40.0, 39.9, 39.8], [25, 50, 75, 100])  # 39.9 -> 39.8 over steps 75-100: 0.25%
        True
        >>> plateaued([50.0, 45.0, 40.0, 35.0], [25, 50, 75, 100])  # 40 -> 35: 12.5%
        False
    """
    if len(val_curve) < 2 or len(val_curve) != len(val_steps):
        return None
    cut = 0.75 * val_steps[-1]
    before = [v for v, s in zip(val_curve, val_steps, strict=True) if s <= cut]
    if not before or before[-1] <= 0:
        return None
    return (before[-1] - val_curve[-1]) / before[-1] < gain
