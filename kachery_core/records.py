"""Frozen records for the modules every command imports: `@dataclass(frozen=True)` without
the cost of making one.

`dataclasses.dataclass` writes and compiles `__init__`, `__repr__`, `__eq__`, `__hash__`,
`__setattr__` and `__delattr__` for each class: 0.3-1.5 ms apiece here, and a `load-file`
of an object already present imports about twenty such classes, a third of what the
whole command costs beyond `import click`. The decorator here gives the same frozen
records from shared methods, with nothing compiled: positional or keyword arguments in
field order, defaults (`field(default=..., default_factory=..., compare=False)`), equality
and hashing over the compared fields, the same `repr`, and `FrozenInstanceError` on
assignment.

Type checkers see `dataclasses.dataclass` and `dataclasses.field` themselves, so they check
each record's constructor as before. What is left out: `dataclasses.fields`, `asdict` and
`replace` (a record is not a dataclass to them), ordering, slots, `InitVar`, and keyword-only
fields; only frozen records are made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

_MISSING: Any = object()


class _Field:
    """What `field(...)` gives: a default or a factory, and whether `==` compares it."""

    __slots__ = ("default", "factory", "compare")

    def __init__(self, default: Any, factory: Optional[Callable[[], Any]], compare: bool) -> None:
        self.default = default
        self.factory = factory
        self.compare = compare


if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass
    from dataclasses import field as field
else:

    def field(
        *,
        default: Any = _MISSING,
        default_factory: Optional[Callable[[], Any]] = None,
        compare: bool = True,
    ) -> Any:
        return _Field(default, default_factory, compare)

    def dataclass(cls: Any = None, *, frozen: bool = False) -> Any:
        if not frozen:
            raise TypeError("kachery_core.records makes frozen records only (frozen=True)")
        return _make_record if cls is None else _make_record(cls)


def _make_record(cls: type) -> type:
    fields: Dict[str, Any] = dict(getattr(cls, "_record_fields", {}))  # a base record's first
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if "ClassVar" in str(annotation):
            continue
        value = cls.__dict__.get(name, _MISSING)
        spec = value if isinstance(value, _Field) else _Field(value, None, True)
        if isinstance(value, _Field):
            if value.default is _MISSING:
                delattr(cls, name)  # no class attribute for a field without a plain default
            else:
                setattr(cls, name, value.default)
        fields[name] = spec
    names = tuple(fields)
    compared = tuple(n for n, spec in fields.items() if spec.compare)
    required = [n for n, s in fields.items() if s.default is _MISSING and s.factory is None]
    own = cls.__dict__
    made: Dict[str, Any] = {
        "_record_fields": fields,
        "_record_compared": compared,
        "_record_required": tuple(required),
        "__match_args__": names,
        "__setattr__": _refuse_setattr,
        "__delattr__": _refuse_delattr,
    }
    # As dataclasses do: a method the class defines itself stays, and so does its own
    # __hash__ (but not the None that defining __eq__ leaves).
    for key, method in (("__init__", _init), ("__repr__", _repr), ("__eq__", _eq)):
        if key not in own:
            made[key] = method
    if own.get("__hash__") is None:
        made["__hash__"] = _hash
    for key, value in made.items():
        setattr(cls, key, value)
    if cls.__doc__ is None:
        cls.__doc__ = f"{cls.__name__}({', '.join(names)})"
    return cls


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    fields = type(self)._record_fields
    if len(args) > len(fields):
        raise TypeError(
            f"{type(self).__name__}() takes {len(fields)} arguments but {len(args)} were given"
        )
    for name, value in zip(fields, args):
        if name in kwargs:
            raise TypeError(f"{type(self).__name__}() got multiple values for {name!r}")
        kwargs[name] = value
    unknown = set(kwargs) - set(fields)
    if unknown:
        raise TypeError(f"{type(self).__name__}() got unexpected arguments {sorted(unknown)}")
    for name, spec in fields.items():
        if name in kwargs:
            value = kwargs[name]
        elif spec.factory is not None:
            value = spec.factory()
        elif spec.default is not _MISSING:
            value = spec.default
        else:
            missing = [n for n in type(self)._record_required if n not in kwargs]
            raise TypeError(f"{type(self).__name__}() missing required arguments {missing}")
        object.__setattr__(self, name, value)
    post_init = getattr(self, "__post_init__", None)
    if post_init is not None:
        post_init()


def _values(self: Any) -> Tuple[Any, ...]:
    return tuple(getattr(self, name) for name in type(self)._record_compared)


def _repr(self: Any) -> str:
    shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in type(self)._record_fields)
    return f"{type(self).__qualname__}({shown})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self: Any) -> int:
    return hash(_values(self))


def _refuse_setattr(self: Any, name: str, value: Any) -> None:
    from dataclasses import FrozenInstanceError

    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _refuse_delattr(self: Any, name: str) -> None:
    from dataclasses import FrozenInstanceError

    raise FrozenInstanceError(f"cannot delete field {name!r}")
