"""Run something the moment a module is imported in a worker, without importing it first."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class AfterImport:
    """An import hook (for ``sys.meta_path``): once ``name`` has been loaded,
    ``then(module)`` runs, before the importer gets the module."""

    def __init__(self, name: str, then: Callable[[Any], object]) -> None:
        self.name = name
        self.then = then

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != self.name:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        loader = None if spec is None else spec.loader
        if loader is None:
            return spec
        load = loader.exec_module
        then = self.then

        def load_and_then(module: Any) -> None:
            load(module)
            then(module)

        loader.exec_module = load_and_then  # type: ignore[method-assign]
        return spec
