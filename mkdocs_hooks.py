"""mkdocs hooks for the documentation site (mkdocs.yml names this file).

The Python blocks of docs/ run as tests, and their fences carry
pytest-markdown-docs options (```python notest, ```python continuation).
The Markdown renderer of the site does not know those words and would not
see such a block as code at all, so they are taken off the fence before a
page is rendered.
"""

from __future__ import annotations

import re
from typing import Any

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>python3?|py)(?P<options>[ \t][^\n]*)?$",
    re.MULTILINE,
)
_TEST_OPTIONS = ("notest", "continuation", "fixture:", "runner:", "retry:")


def _without_test_options(match: re.Match[str]) -> str:
    options = (match["options"] or "").split()
    kept = [word for word in options if not word.startswith(_TEST_OPTIONS)]
    return match["indent"] + match["fence"] + " ".join([match["lang"], *kept])


def on_page_markdown(markdown: str, **_: Any) -> str:
    return _FENCE.sub(_without_test_options, markdown)
