"""The documentation site: its API reference and its pages.

`make docs` (and `make test`) build the site with `mkdocs build --strict`,
which fails on a broken link, a page left out of the navigation or a name
the reference cannot find. What the build cannot know is that a public name
is missing from the reference: these tests check that, by reading the
reference page against ``makeparallel.__all__``.
"""

from __future__ import annotations

import re
from pathlib import Path

import makeparallel as mp

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference.md"

# an mkdocstrings directive: a line "::: makeparallel.NAME"
_DIRECTIVE = re.compile(r"^:::\s+makeparallel\.(\S+)\s*$", re.MULTILINE)


def _documented() -> list[str]:
    return _DIRECTIVE.findall(REFERENCE.read_text(encoding="utf-8"))


def test_every_public_name_has_a_reference_entry() -> None:
    missing = sorted(set(mp.__all__) - set(_documented()))
    assert not missing, (
        f"public names without an entry in docs/reference.md: {missing}; "
        "add a line '::: makeparallel.NAME' for each under the right heading"
    )


def test_the_reference_documents_only_public_names_each_once() -> None:
    names = _documented()
    assert sorted(set(names) - set(mp.__all__)) == []
    assert len(names) == len(set(names))


def test_the_reference_and_every_page_are_in_the_site_navigation() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config[config.index("\nnav:") :]
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert "reference.md" in pages
    assert [page for page in pages if f": {page}\n" not in nav + "\n"] == []
