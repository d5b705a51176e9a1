"""The one escaping function for untrusted text written into Markdown (REPORT.md, the
merged report, `compare --markdown`).

Every field of a results file may come from another machine: a CPU name, a framework
version, a variant, a cell id or an error text may hold `|` (which splits a table
row), a newline (which ends it and can start a `# heading`), raw HTML (`<script>`,
`<img onerror=...>`, which a Markdown viewer renders) or image/link syntax
(`![t](http://...)`, which loads an external resource). `md_text` turns any value
into inline text that stays one table cell or one list item and renders as the
characters it holds; `md_unescape` undoes it for the HTML report, which escapes
HTML itself. Imports nothing but the standard library.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def md_text(value: object) -> str:
    """`value` as one line of inert Markdown: control characters and newlines become
    spaces; backslash, pipe and backtick are backslash-escaped; `<` and `>` become
    entities; `![` and `](` are broken so no image or inline link can form."""
    text = _CONTROL.sub(" ", str(value))
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    text = text.replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("![", "!\\[").replace("](", "\\](")


def md_unescape(text: str) -> str:
    """The characters `md_text` escaped, for a renderer that escapes HTML itself."""
    text = re.sub(r"\\([\\|`\[\]])", r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">")
