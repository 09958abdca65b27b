"""Griffe extension: turn the docstrings' Sphinx roles (``:class:`X```, ``:func:`~a.b.c```) into API links.

The package's docstrings are Google style with Sphinx cross-reference roles, which Markdown would show as
``:class:`` followed by code. Each role becomes an optional autorefs cross-reference: a link where the target is
documented on the site, plain code where it is not (an optional reference never fails ``--strict``). Names are
resolved in the docstring's own scope, as Python would (``OffPolicyAlgorithm`` in ``sac.py`` is
``lightning_sparse_rl.algorithms.base.OffPolicyAlgorithm``).
"""

from __future__ import annotations

import html
import re
from typing import Any

from griffe import Extension, Module, Object

#: A Sphinx role: ``:class:`target```, ``:py:func:`~target```, ``:meth:`title <target>```.
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`(?P<body>[^`]+)`")
TITLED = re.compile(r"(?P<title>.+?)\s*<(?P<target>[^<>]+)>")


def _identifier(obj: Object, target: str) -> str:
    """The full path of ``target`` as seen from ``obj``'s docstring (``target`` itself when it resolves nowhere)."""
    head, _, rest = target.partition(".")
    try:
        resolved = obj.resolve(head)
    except Exception:  # griffe's NameResolutionError, or an alias it cannot follow
        return target
    return f"{resolved}.{rest}" if rest else resolved


def _replace_roles(obj: Object, text: str) -> str:
    """``text`` with every Sphinx role replaced by an optional cross-reference."""

    def link(match: re.Match[str]) -> str:
        body = match["body"].strip()
        titled = TITLED.fullmatch(body)
        if titled:
            title, target = titled["title"], titled["target"].lstrip("~")
        else:
            target = body.lstrip("~")
            title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
        identifier = html.escape(_identifier(obj, target), quote=True)
        return f'<autoref identifier="{identifier}" optional><code>{html.escape(title)}</code></autoref>'

    return ROLE.sub(link, text)


def _visit(obj: Object) -> None:
    """Rewrite the docstrings of ``obj`` and its own members (aliases are left to their targets)."""
    if obj.docstring is not None:
        obj.docstring.value = _replace_roles(obj, obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias:
            _visit(member)


class SphinxRoles(Extension):
    """Rewrites Sphinx roles in every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        """Visit the whole package."""
        _visit(pkg)
