"""`kachery_core.records` makes frozen records that behave as `@dataclass(frozen=True)` does
(the modules on the start-up path use it instead): each check runs on a real dataclass and
on a record declared the same way, and expects the same result."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import sys
from typing import Any, ClassVar, Dict, Optional

import pytest

from kachery_core import records


@records.dataclass(frozen=True)
class Point:
    x: int
    y: int = 0
    label: Optional[str] = records.field(default=None, compare=False)
    extra: Dict[str, str] = records.field(default_factory=dict)
    kind: ClassVar[str] = "point"


@dataclasses.dataclass(frozen=True)
class RealPoint:
    x: int
    y: int = 0
    label: Optional[str] = dataclasses.field(default=None, compare=False)
    extra: Dict[str, str] = dataclasses.field(default_factory=dict)
    kind: ClassVar[str] = "point"


@records.dataclass(frozen=True)
class Pair:
    """A documented record."""

    a: str
    b: str

    def joined(self) -> str:
        return self.a + self.b


BOTH = [Point, RealPoint]


def _shown(obj: Any) -> str:
    return repr(obj).replace("RealPoint", "Point")


@pytest.mark.parametrize("cls", BOTH)
def test_arguments_defaults_and_factories(cls: Any) -> None:
    p = cls(1, y=2)
    assert (p.x, p.y, p.label, p.extra) == (1, 2, None, {})
    assert cls(1).extra is not cls(1).extra  # a fresh dict each time
    assert _shown(cls(3, 4, "a")) == "Point(x=3, y=4, label='a', extra={})"
    assert cls.kind == "point" and "kind" not in _shown(p)
    if cls is Point or sys.version_info >= (3, 10):  # dataclasses add it from 3.10 on
        assert cls.__match_args__ == ("x", "y", "label", "extra")


@pytest.mark.parametrize("cls", BOTH)
def test_equality_and_hash_use_the_compared_fields(cls: Any) -> None:
    assert cls(1, 2, "a") == cls(1, 2, "b")  # label is not compared
    assert cls(1, 2) != cls(1, 3)
    assert cls(1, 2) != (1, 2)
    hashable = cls(1, 2, "a", extra=None)  # type: ignore[arg-type]
    assert hash(hashable) == hash(cls(1, 2, "b", extra=None))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hash(cls(1))  # a dict field cannot be hashed, as with a dataclass


def test_records_of_different_classes_are_not_equal() -> None:
    assert Point(1) != RealPoint(1)
    assert Pair("a", "b") == Pair(a="a", b="b") and Pair("a", "b").joined() == "ab"


@pytest.mark.parametrize("cls", BOTH)
def test_frozen(cls: Any) -> None:
    p = cls(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.x
    assert p.x == 1


@pytest.mark.parametrize("cls", BOTH)
def test_bad_arguments_are_refused(cls: Any) -> None:
    for args, kwargs in [((), {}), ((1, 2, 3, {}, 5), {}), ((1,), {"x": 1}), ((1,), {"z": 1})]:
        with pytest.raises(TypeError):
            cls(*args, **kwargs)


@pytest.mark.parametrize("cls", [Point, Pair])
def test_pickle_and_copy_keep_the_values(cls: Any) -> None:
    p = cls("a", "b")
    for other in (pickle.loads(pickle.dumps(p)), copy.copy(p), copy.deepcopy(p)):
        assert other == p and repr(other) == repr(p)


def test_only_frozen_records_and_the_docstring_stays() -> None:
    with pytest.raises(TypeError):
        records.dataclass(Pair)
    assert Pair.__doc__ == "A documented record."
    assert Point.__doc__ == "Point(x, y, label, extra)"
    assert not dataclasses.is_dataclass(Point)  # what the module docstring says is left out
