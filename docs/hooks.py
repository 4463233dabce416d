"""mkdocs hook: tidy Sphinx-isms in docstrings on the API pages.

The package's docstrings use a little reStructuredText (``:class:`X```, ``text::`` before a
literal block); mkdocstrings renders docstrings as Markdown, where those show up verbatim.
This hook rewrites the rendered HTML of the API pages only: a role before inline code becomes
plain inline code (``~a.b.C`` shows as ``C``, as Sphinx would), and a paragraph ending in
``::`` ends in a single colon.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):<code>(~?)([^<]+)</code>"
)
_LITERAL_INTRO = re.compile(r"::</p>")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.group(1), match.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    if not page.file.src_uri.startswith("api/"):
        return html
    return _LITERAL_INTRO.sub(":</p>", _ROLE.sub(_role, html))
