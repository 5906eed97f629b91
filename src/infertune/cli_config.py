"""Expose a configuration dataclass as command-line options, field for field.

The dataclass is the single source of names, types, defaults and help text; a command never restates them, so the
CLI and the Python API cannot drift apart. A field whose type is itself a dataclass (the demo's training recipe) is
flattened: each of its fields becomes an option of its own name, with the default the outer default gives it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from typing import Any, Callable

import typer


def _options(cls: type) -> list[tuple[str | None, dataclasses.Field, Any, Any]]:
    """(owner field or None, field, type, default) for every option ``cls`` maps to, nested dataclasses flattened."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(hints[f.name]):
            inner_hints = typing.get_type_hints(hints[f.name])
            for inner in dataclasses.fields(hints[f.name]):
                out.append((f.name, inner, inner_hints[inner.name], getattr(default, inner.name)))
        else:
            out.append((None, f, hints[f.name], default))
    return out


def with_config(cls: type, param: str = "config") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Replace the command's ``param`` argument by one option per field of ``cls`` and build ``cls`` from them."""
    hints = typing.get_type_hints(cls)
    mapped = _options(cls)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn)
        fn_hints = typing.get_type_hints(fn)
        kept = [p.replace(annotation=fn_hints.get(p.name, p.annotation))
                for p in signature.parameters.values() if p.name != param]
        taken = {p.name for p in kept}
        options = []
        for _, f, kind, default in mapped:
            if f.name in taken:
                raise TypeError(f"{fn.__name__}: option --{f.name} of {cls.__name__} clashes with another option")
            taken.add(f.name)
            flag = "--" + f.name.replace("_", "-")
            if kind is bool:
                flag = f"{flag}/--no-{flag[2:]}"
            option = typer.Option(default, flag, help=f.metadata.get("help", ""))
            options.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            values: dict[str, Any] = {}
            nested: dict[str, dict[str, Any]] = {}
            for owner, f, _, _ in mapped:
                value = kwargs.pop(f.name)
                if owner is None:
                    values[f.name] = value
                else:
                    nested.setdefault(owner, {})[f.name] = value
            try:
                for owner, fields in nested.items():
                    values[owner] = hints[owner](**fields)
                kwargs[param] = cls(**values)
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from exc
            return fn(*args, **kwargs)

        params = kept + options
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate
