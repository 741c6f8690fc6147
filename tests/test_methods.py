"""``@parallel`` on methods, and the typed option names agreeing with the accepted ones.

The typing tests (tests/typing) say what a type checker sees; these say the
same calls do that at run time.
"""

from __future__ import annotations

import pytest

import makeparallel as mp
from makeparallel import _options, _typing


class Scaler:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    @mp.parallel(backend="thread")
    def scale(self, x: int) -> int:
        return self.factor * x

    @classmethod
    @mp.parallel(backend="thread")
    def named(cls, x: int) -> str:
        return f"{cls.__name__}:{x}"

    @staticmethod
    @mp.parallel(backend="thread")
    def halve(x: int) -> float:
        return x / 2


def test_a_method_runs_with_its_instance_bound() -> None:
    assert Scaler(3).scale(4).result(timeout=10) == 12
    assert Scaler.scale(Scaler(5), 2).result(timeout=10) == 10


def test_a_classmethod_runs_with_its_class_bound() -> None:
    assert Scaler.named(7).result(timeout=10) == "Scaler:7"
    assert Scaler(1).named(8).result(timeout=10) == "Scaler:8"


def test_a_staticmethod_runs_without_binding() -> None:
    assert Scaler.halve(3).result(timeout=10) == 1.5


def test_the_typed_options_are_the_accepted_ones() -> None:
    assert set(_typing.CallOptions.__annotations__) == set(_options.OPTION_NAMES)


def test_a_misspelled_option_names_the_accepted_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown option.*timout.*accepted: .*timeout"):
        Scaler.halve.options(timout=5)  # type: ignore[call-arg]
