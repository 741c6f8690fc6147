"""Framework integrations: each submodule connects a pool to one framework.

    makeparallel.integrations.fastapi   a lifespan-owned pool, a dependency, 503 on a full queue
    makeparallel.integrations.flask     an extension: one pool per process, from app.config
    makeparallel.integrations.django    a Django app: settings.MAKEPARALLEL, worker set-up
    makeparallel.integrations.joblib    a joblib backend named "makeparallel" (scikit-learn)

Each submodule imports its framework when it is imported, and only then:
this package itself imports nothing optional, so ``import makeparallel``
never pays for a framework it does not use.
"""

from __future__ import annotations

__all__: list[str] = []


def missing(module: str, extra: str, feature: str) -> str:
    """The message of the ImportError raised when ``feature`` lacks ``module``."""
    return (
        f"{feature} needs {module}, which is not installed here: "
        f'pip install "makeparallel[{extra}]"'
    )
