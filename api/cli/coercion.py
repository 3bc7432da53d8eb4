"""Typer's coercion of plain option values (str, bool, Path, int, float) without importing pydantic.

Why: Typer 0.2x coerces every option value, defaults included, through a
pydantic ``TypeAdapter`` built on first use; importing pydantic and building
the adapters was 0.15-0.25 s of every ``reunite`` start on the shared 2-core
machine (``python -X importtime``: ``typer._adapters`` 146-161 ms cumulative at
load 3-4, more than the rest of ``reunite banks``). The values reunite's verbs
take are plain: a string, a path, a number in a range. Those are coerced here
to exactly what the adapter returns (tests/test_cli_startup.py compares both
on a table of values); any other value, or any value the adapter could refuse
(out of range, not a plain number, an empty path), goes to Typer's own pydantic
coercion, so every error message stays Typer's. Where Typer has no such layer
(an older or newer release without ``typer._coercion.build_runtime_param``),
:func:`install` leaves Typer alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Strings whose meaning is the same for int() / float() and pydantic's lax parse (checked by a test).
_INT = re.compile(r"-?[0-9]+\Z")
_FLOAT = re.compile(r"-?[0-9]+(\.[0-9]+)?\Z")
_NOT_PLAIN = object()


def _in_range(number: float, info: Any) -> bool:  # noqa: ANN401 - typer.models.ParameterInfo
    return (info.min is None or number >= info.min) and (info.max is None or number <= info.max)


def plain_value(annotation: Any, info: Any, value: Any, param: Any = None, ctx: Any = None) -> Any:  # noqa: ANN401
    """``value`` coerced to ``annotation`` as Typer's adapter would, or ``_NOT_PLAIN`` to ask it."""
    if annotation is str:
        return value if isinstance(value, str) else _NOT_PLAIN
    if annotation is bool:
        return value if isinstance(value, bool) else _NOT_PLAIN
    if annotation is int or annotation is float:
        if getattr(info, "clamp", False):
            return _NOT_PLAIN
        if isinstance(value, bool):
            return _NOT_PLAIN
        if annotation is int:
            number = value if isinstance(value, int) else (
                int(value) if isinstance(value, str) and _INT.match(value) else None)
        else:
            number = float(value) if isinstance(value, int | float) else (
                float(value) if isinstance(value, str) and _FLOAT.match(value) else None)
        if number is None or number != number or not _in_range(number, info):  # NaN, refusals: Typer's words
            return _NOT_PLAIN
        return number
    if annotation is Path:
        from typer._param_types import coerce_cli_path

        path_type = info.path_type or Path
        if path_type is not Path:
            return _NOT_PLAIN
        if isinstance(value, str) and value and "\x00" not in value:
            value = Path(value)
        if not isinstance(value, Path):
            return _NOT_PLAIN
        return coerce_cli_path(value, info, path_type=Path, param=param, ctx=ctx)
    return _NOT_PLAIN


def install() -> bool:
    """Route Typer's plain parameters through :func:`plain_value`; False where Typer has no such layer."""
    try:
        from typer import _coercion
        from typer import core as typer_core
    except ImportError:  # pragma: no cover - a Typer without the pydantic layer
        return False
    full = getattr(_coercion, "build_runtime_param", None)
    base = getattr(_coercion, "RuntimeParam", None)
    if full is None or base is None or getattr(typer_core, "build_runtime_param", None) is not full:
        return False

    @dataclass(frozen=True)
    class PlainRuntimeParam(base):
        """A plain parameter: coerced here, anything else by Typer's own (pydantic) runtime param."""

        descriptor: Any = None
        _full: dict = field(default_factory=dict, compare=False, repr=False)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:  # noqa: ANN401
            out = plain_value(self.annotation, self.parameter_info, value, param, ctx)
            if out is not _NOT_PLAIN:
                return out
            if "param" not in self._full:
                self._full["param"] = full(self.descriptor)
            return self._full["param"]._coerce_value(value, param=param, ctx=ctx)

    def build(descriptor: Any) -> Any:  # noqa: ANN401 - typer._coercion.TypeDescriptor
        info = descriptor.parameter_info
        if (descriptor.file_annotation is None and getattr(info, "parser", None) is None
                and descriptor.annotation in (str, bool, int, float, Path)):
            return PlainRuntimeParam(parameter_info=info, annotation=descriptor.annotation,
                                     descriptor=descriptor)
        return full(descriptor)

    typer_core.build_runtime_param = build
    return True
