"""Expose a configuration dataclass as command-line options, field for field.

The dataclass is the single source of names, types, defaults and help text; a command never restates them, so the
CLI and the Python API cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from typing import Any, Callable

import typer


def with_config(cls: type, param: str = "config") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Replace the command's ``param`` argument by one option per field of ``cls`` and build ``cls`` from them."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn)
        fn_hints = typing.get_type_hints(fn)
        kept = [p.replace(annotation=fn_hints.get(p.name, p.annotation))
                for p in signature.parameters.values() if p.name != param]
        taken = {p.name for p in kept}
        options = []
        for f in fields:
            if f.name in taken:
                raise TypeError(f"{fn.__name__}: option --{f.name} of {cls.__name__} clashes with an argument")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            flag = "--" + f.name.replace("_", "-")
            if hints[f.name] is bool:
                flag = f"{flag}/--no-{flag[2:]}"
            option = typer.Option(default, flag, help=f.metadata.get("help", ""))
            options.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                             annotation=hints[f.name]))

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            values = {f.name: kwargs.pop(f.name) for f in fields}
            try:
                kwargs[param] = cls(**values)
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from exc
            return fn(*args, **kwargs)

        params = kept + options
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate
