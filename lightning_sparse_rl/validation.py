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
