"""What the decorators share: refusing generators, and reading named arguments of a
call without ``inspect.signature(...).bind`` on the hot path."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from trading_telemetry.errors import InstrumentationError

Extract = Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]


def check_function(fn: Callable[..., Any], decorator: str) -> None:
    """Generators are refused: a generator's call returns at once, so its duration and
    span would not be the work's."""
    if not callable(fn):
        raise InstrumentationError(f"{decorator}: {fn!r} is not callable")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise InstrumentationError(
            f"{decorator}: {fn.__qualname__} is a generator; decorate the function that consumes it instead"
        )


def argument_extractor(fn: Callable[..., Any], names: Sequence[str], decorator: str) -> Extract:
    """A function of (args, kwargs) returning the values of the arguments ``names``, in
    order, defaults applied. Raises InstrumentationError if ``fn`` has no such argument."""
    if not names:
        return _no_arguments
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    getters: list[tuple[int | None, str, Any]] = []
    for name in names:
        param = signature.parameters.get(name)
        if param is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            known = ", ".join(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
            raise InstrumentationError(
                f"{decorator}: {fn.__qualname__} has no argument {name!r}; its arguments: {known or 'none'}"
            )
        positional = param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
        default = None if param.default is param.empty else param.default
        getters.append((params.index(param) if positional else None, name, default))

    def extract(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        n = len(args)
        return tuple([args[i] if i is not None and i < n else kwargs.get(k, d) for i, k, d in getters])

    return extract


def _no_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    return ()
