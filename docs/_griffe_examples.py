"""Griffe extension for the API reference: read attnunet's ``Example:`` sections as examples.

attnunet's docstrings are Google style and head their doctests ``Example:`` (singular).
Griffe's Google parser knows only ``Examples:`` as a section and renders any other title as
an admonition, in which the ``>>>`` lines become nested block quotes and the expected
output is read as Markdown (``[0, 2, 4, 6]`` as a broken cross-reference, failing the strict
build). This extension renames the heading before parsing, so the doctests render as code.
Used by ``mkdocs.yml`` only; the library is unchanged.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Example:[ \t]*$", re.M)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section headings to ``Examples:`` in every loaded docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _HEADING.sub(r"\1Examples:", obj.docstring.value)
