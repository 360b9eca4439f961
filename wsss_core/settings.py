"""Typed settings: one loader that turns a resolved configuration mapping into a validated object.

Each method module declares its settings type next to its code (``CAMSettings`` in ``methods/cam.py``,
registered as the method class's ``settings_type``), and ``wsss_core.stages.settings`` declares the
``stages:`` sections. A type is a pydantic model built on :class:`Settings`:

* ``extra="forbid"``: a key the type does not declare (a typo) is an error that lists the known keys;
* ranges and choices on the fields (``Field(gt=0)``, ``Literal[...]``): a value out of range is an error
  that says the allowed range;
* :meth:`Settings.load` turns pydantic's report into **one** :class:`~wsss_core.errors.ConfigError` line
  naming the config key path (``methods.cti.params.train.epochs = -1: must be greater than 0``), which
  ``snakemake -n`` prints before any job (``workflow_checks.config_problem``).

A default declared on a type is the only copy of that default: config.yaml's method blocks write only
what differs from it (``tests/test_settings.py`` fails on a repeated default). The mapping a method's jobs
receive (their identity, ``workflow_config.method_config``) is the type's dump — every key, defaults filled
in — so writing a default out or leaving it to the type is the same job, and a changed value is another.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

from wsss_core.errors import ConfigError

S = TypeVar("S", bound="Settings")


class Settings(BaseModel):
    """Base of every settings type: unknown keys forbidden, values immutable once checked."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    @classmethod
    def load(cls: type[S], data: Mapping[str, Any] | None, where: str = "",
             origin: Callable[[Sequence[Any]], str | None] | None = None,
             also_known: Callable[[Sequence[Any]], Sequence[str]] | None = None) -> S:
        """``data`` checked against this type; one ConfigError line naming the key otherwise.

        ``where`` is the config path of ``data`` (``methods.cti.params``); ``origin`` may map the location
        of a bad value to the config path that set it (a dataset preset, a variant); ``also_known`` may add
        keys that are accepted at a location although the type does not declare them (run-time keys,
        checked by ``wsss_core.runtime``)."""
        try:
            return cls.model_validate(dict(data or {}))
        except ValidationError as error:
            raise ConfigError(describe(cls, error, data or {}, where, origin, also_known)) from None


# ------------------------------------------------------------------------------ the one-line message
def key_path(where: str, parts: Sequence[Any]) -> str:
    text = where
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the top level"


def _data_location(data: Any, loc: Sequence[Any], missing: bool) -> list[Any]:
    """``loc`` without pydantic's union-member tags (``'int'``, ``'function-after[...]'``): the parts
    that are keys or indices of ``data`` (a missing key is kept as the last part)."""
    parts: list[Any] = []
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, Mapping) and part in node:
            parts.append(part)
            node = node[part]
        elif isinstance(node, (list, tuple)) and isinstance(part, int) and 0 <= part < len(node):
            parts.append(part)
            node = node[part]
        elif last and missing and isinstance(part, str):
            parts.append(part)
    return parts


def _model_at(model: type[BaseModel], parts: Sequence[Any]) -> type[BaseModel] | None:
    """The settings type that describes the mapping at ``parts`` (None when it is not a model)."""
    current: Any = model
    for part in parts:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) in (dict, Mapping):
            current = get_args(current)[1]
        elif get_origin(current) in (list, tuple, Sequence):
            current = get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """``X`` for ``X | None`` / ``Annotated[X, ...]``; the first model of a union of models."""
    for _ in range(16):
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is Annotated:
            annotation = args[0]
        elif origin is Union or origin is types.UnionType:
            members = [arg for arg in args if arg is not type(None)]
            models = [arg for arg in members if isinstance(arg, type) and issubclass(arg, BaseModel)]
            if models:
                return models[0]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation
    return annotation


def describe(model: type[BaseModel], error: ValidationError, data: Mapping[str, Any], where: str,
             origin: Callable[[Sequence[Any]], str | None] | None = None,
             also_known: Callable[[Sequence[Any]], Sequence[str]] | None = None) -> str:
    """One line for the first error of ``error``: the key path, the value and what is allowed."""
    first = error.errors()[0]
    kind = first["type"]
    parts = _data_location(data, first["loc"], missing=kind == "missing")
    path = (origin(parts) if origin else None) or key_path(where, parts)
    message = str(first["msg"]).replace("Input should be", "must be").replace("Value error, ", "")
    if kind == "extra_forbidden":
        parent = _model_at(model, parts[:-1])
        known = sorted(parent.model_fields) if parent is not None else []
        if also_known is not None:
            known = sorted({*known, *also_known(parts[:-1])})
        return f"unknown key '{path}' in config (known keys there: {', '.join(known) or 'none'})"
    if kind == "missing":
        return f"config key {path} is missing: set it in config.yaml"
    value = first.get("input")
    shown = repr(value) if not isinstance(value, Mapping) else "a mapping"
    return f"{path} = {shown}: {message}"


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a settings type (documentation, editors; ``python -m wsss_core.settings``)."""
    return model.model_json_schema()


# ------------------------------------------------------------------------- field types the types share
from pydantic import Field  # noqa: E402  (kept beside the aliases that use it)

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
Pair = tuple[float, float]
IntPair = tuple[PositiveInt, PositiveInt]
Scales = Annotated[list[PositiveFloat], Field(min_length=1)]
# an after-step / until-step switch: -1 (or any negative) = from the start / never
Step = int
