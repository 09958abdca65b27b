"""Early checks of user-supplied values, with messages that name the value and the allowed range."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml


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
#: The most agents of one population (each has its own train and eval envs; jsonargparse checks each seed).
MAX_POPULATION = 1024
#: The most values a YAML file may expand to once its aliases are expanded (a "YAML bomb" expands to billions).
MAX_YAML_VALUES = 100_000
_SEED_FORMS = "a range (1-8), a comma-separated list (1,3,5) or a YAML list ([1, 2, 3]) of whole numbers"


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters: an error message never echoes a huge value."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text):,} characters)"


def _check_population_size(count: int, value: object) -> None:
    if count > MAX_POPULATION:
        raise UserInputError(
            f"seeds={shown(value)} names {count:,} agents; a population has at most {MAX_POPULATION:,} (each agent "
            "has its own envs): split it into several runs"
        )


def check_seeds(seeds: list[int]) -> None:
    """Raise :class:`UserInputError` unless ``seeds`` is a non-empty list of distinct seeds in ``[0, 2**32)``.

    At most :data:`MAX_POPULATION` of them.
    """
    if not seeds:
        raise UserInputError("seeds=[] must name at least one seed")
    _check_population_size(len(seeds), seeds)
    for seed in seeds:
        check_in_range("seed", seed, 0, MAX_SEED)
    if len(set(seeds)) != len(seeds):
        raise UserInputError(f"seeds={shown(seeds)} must be distinct: two agents with one seed would be the same agent")


def _is_whole_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seeds_of_text(text: str, value: object) -> list[int]:
    """Seeds from ``1-8`` or ``1,3,5``; their count is checked before any list is made."""
    if "-" in text.lstrip("-") and "," not in text:
        first, last = (int(part) for part in text.split("-", 1))
        if last < first:
            raise ValueError
        _check_population_size(last - first + 1, value)
        return list(range(first, last + 1))
    _check_population_size(text.count(",") + 1, value)
    return [int(part) for part in text.split(",") if part.strip()]


def parse_seeds(value: object) -> list[int]:
    """Seeds from ``1-8`` (a range, both ends included), ``1,3,5``, one number, or a list of numbers.

    Raises:
        UserInputError: for anything else (a list of lists, a mapping, ...), or for seeds that :func:`check_seeds`
            refuses; a range of more than :data:`MAX_POPULATION` seeds before it is made.

    """
    if _is_whole_number(value):
        seeds = [value]
    elif isinstance(value, list) and all(_is_whole_number(seed) for seed in value):
        seeds = list(value)
    elif isinstance(value, str):
        try:
            seeds = _seeds_of_text(value.strip().strip("[]"), value)
        except ValueError as err:
            if isinstance(err, UserInputError):
                raise
            raise UserInputError(f"seeds={shown(value)} must be {_SEED_FORMS}") from None
    else:
        raise UserInputError(f"seeds={shown(value)} must be {_SEED_FORMS}")
    check_seeds(seeds)
    return seeds


def yaml_values(content: object, limit: int = MAX_YAML_VALUES) -> int:
    """How many values ``content`` (as ``yaml.safe_load`` returns it) holds once its aliases are expanded.

    Shared lists and mappings (YAML aliases) are counted once per use without being expanded, so a YAML bomb is
    measured in microseconds; counting stops once it passes ``limit``.

    Raises:
        UserInputError: a list or mapping that contains itself, or one nested too deeply to count.

    """
    sizes: dict[int, int] = {}

    def count(node: object, inside: frozenset[int]) -> int:
        if not isinstance(node, (list, dict)):
            return 1
        if id(node) in inside:
            raise UserInputError("a YAML alias refers to a list or mapping that contains it")
        if id(node) not in sizes:
            items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            total = 1
            for item in items:
                total += count(item, inside | {id(node)})
                if total > limit:
                    break
            sizes[id(node)] = total
        return sizes[id(node)]

    try:
        return count(content, frozenset())
    except RecursionError:
        raise UserInputError("lists or mappings are nested too deeply") from None


def check_yaml_size(content: object, what: str) -> None:
    """Refuse YAML ``content`` of file ``what`` that expands to more than :data:`MAX_YAML_VALUES` values."""
    try:
        values = yaml_values(content)
    except UserInputError as err:
        raise UserInputError(f"{what}: {err}") from None
    if values > MAX_YAML_VALUES:
        raise UserInputError(
            f"{what} expands to more than {MAX_YAML_VALUES:,} values (YAML aliases repeat what they name): "
            "a config or sweep file this large is not supported"
        )


def read_yaml_file(
    path: str | Path,
    what: str,
    *,
    check_before_size: Callable[[Any], None] | None = None,
    with_position: bool = False,
    reason_chars: int | None = None,
) -> Any:
    """The content of the YAML file ``path`` (as ``yaml.safe_load`` reads it), refused when not YAML or too large.

    ``what`` names the file in errors (``config file PATH``, ``sweep file PATH``). The options keep each caller's
    wording: ``check_before_size`` checks the content before its size is counted (so its error wins);
    ``with_position`` gives a YAML error's line and column; ``reason_chars`` cuts YAML's reason.

    Raises:
        UserInputError: ``{what}: not valid YAML (REASON)`` (``{what}, line L, column C: PROBLEM (not valid YAML)``
            with ``with_position``), or what :func:`check_yaml_size` refuses.

    """
    try:
        content = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise UserInputError(_not_yaml(err, what, with_position, reason_chars)) from None
    if check_before_size is not None:
        check_before_size(content)
    check_yaml_size(content, what)
    return content


def _not_yaml(error: yaml.YAMLError, what: str, with_position: bool, reason_chars: int | None) -> str:
    """The one-line message for YAML file ``what`` that ``yaml.safe_load`` refused with ``error``."""
    if with_position and isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{what}{where}: {error.problem or error.context} (not valid YAML)"
    return f"{what}: not valid YAML ({' '.join(str(error).split())[:reason_chars]})"


def class_at(class_path: str) -> type | None:
    """The class a config's ``class_path`` names (``None`` when it cannot be imported: a check then skips it)."""
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def leads_out_of_folder(path: str) -> bool:
    """Whether ``path``, read from inside a folder, can lead out of it: absolute, from ``~``, or with a ``..`` part."""
    return path.startswith(("/", "~")) or ".." in PurePosixPath(path).parts
