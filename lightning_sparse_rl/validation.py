"""Early checks of user-supplied values, with messages that name the value and the allowed range."""

from __future__ import annotations


class UserInputError(ValueError):
    """A value the user gave is not allowed (the message names it and what is allowed)."""


def check_positive(name: str, value: float) -> None:
    """Raise :class:`UserInputError` unless ``value > 0``."""
    if not value > 0:
        raise UserInputError(f"{name}={value!r} must be > 0")


def check_at_least(name: str, value: float, minimum: float) -> None:
    """Raise :class:`UserInputError` unless ``value >= minimum``."""
    if not value >= minimum:
        raise UserInputError(f"{name}={value!r} must be >= {minimum}")


def check_in_range(
    name: str, value: float, low: float, high: float, *, high_inclusive: bool = False, low_inclusive: bool = True
) -> None:
    """Raise :class:`UserInputError` unless ``low <= value < high`` (``<`` / ``<=`` per the ``*_inclusive`` flags)."""
    above = low <= value if low_inclusive else low < value
    below = value <= high if high_inclusive else value < high
    if not (above and below):
        opening, closing = "[" if low_inclusive else "(", "]" if high_inclusive else ")"
        raise UserInputError(f"{name}={value!r} must be in {opening}{low}, {high}{closing}")


#: Seeds numpy accepts (the envs' and spaces' generators): ``[0, 2**32)``.
MAX_SEED = 2**32


def check_seeds(seeds: list[int]) -> None:
    """Raise :class:`UserInputError` unless ``seeds`` is a non-empty list of distinct seeds in ``[0, 2**32)``."""
    if not seeds:
        raise UserInputError("seeds=[] must name at least one seed")
    for seed in seeds:
        check_in_range("seed", seed, 0, MAX_SEED)
    if len(set(seeds)) != len(seeds):
        raise UserInputError(f"seeds={seeds} must be distinct: two agents with one seed would be the same agent")


def parse_seeds(value: str | int | list[int]) -> list[int]:
    """Seeds from ``1-8`` (a range, both ends included), ``1,3,5``, one number, or a list of numbers.

    Raises:
        UserInputError: for anything else, or for seeds that :func:`check_seeds` refuses.

    """
    if isinstance(value, int):
        seeds = [value]
    elif isinstance(value, list):
        seeds = [int(v) for v in value]
    else:
        text = value.strip().strip("[]")
        try:
            if "-" in text.lstrip("-") and "," not in text:
                first, last = (int(part) for part in text.split("-", 1))
                if last < first:
                    raise ValueError
                seeds = list(range(first, last + 1))
            else:
                seeds = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise UserInputError(
                f"seeds={value!r} must be a range (1-8), a comma-separated list (1,3,5) or a YAML list ([1, 2, 3])"
            ) from None
    check_seeds(seeds)
    return seeds
