"""Markdown-safe text: user strings that stay text in any Markdown viewer.

The Markdown twin of a report is read by viewers that render all of CommonMark/GFM
(links, images, raw HTML, emphasis), while the HTML side renders only the small subset
of :func:`noisylab.report.html.markdown_to_html`.  :func:`escape_markdown` makes a user
string (class name, file name, text example, title, bench method name) inert;
:func:`sanitize_markdown` keeps the subset's markup (pipe tables, ``#`` headings,
``-``/``*`` bullets, ```code``` and ``**bold**``, backslash escapes) and escapes
everything else, so the twin shows what the HTML shows.

Only characters that could start markup are escaped, and only where they could:
ordinary text (numbers, ``±``, words, ``snake_case`` names, ``(<)``) is left byte for
byte as it is.
"""
from __future__ import annotations

import re

__all__ = ["escape_line_start", "escape_markdown", "inline_tokens", "sanitize_markdown"]

#: ASCII punctuation: what a backslash can escape in CommonMark.
PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_ENTITY = re.compile(r"&(?=#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{1,31};)")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")  # an HTML tag, comment, declaration or autolink
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_BULLET_PREFIX = re.compile(r"^(\s*[-*]\s+)(.*)$")


def escape_markdown(text, *, table: bool = False) -> str:
    """``text`` with the characters that would start Markdown/HTML markup backslash-escaped.

    Escaped: backticks, ``*``, ``~``, a backslash before punctuation (or at the end),
    ``_`` unless inside a word (``cl_coteaching`` stays), ``]`` before ``(`` or ``[`` or
    at the end (links, images), ``<`` that would open a tag or an autolink, ``&`` that
    would start an entity; with ``table=True`` also ``|``.  A string placed at the start
    of a line also needs :func:`escape_line_start` (link reference definitions, headings).

    Parameters
    ----------
    text : str
        A user string; it is not otherwise changed (no line flattening).
    table : bool, default=False
        Also escape ``|`` (for a cell of a pipe table).

    Returns
    -------
    str
        Renders as ``text`` itself in CommonMark/GFM.

    Examples
    --------
    >>> escape_markdown("![t](http://evil.example/p.png)")
    '![t\\\\](http://evil.example/p.png)'
    >>> escape_markdown("clean_subset 85.13 ± 0.35")
    'clean_subset 85.13 ± 0.35'
    """
    s = str(text)
    n = len(s)
    out = []
    i = 0
    while i < n:
        c = s[i]
        nxt = s[i + 1] if i + 1 < n else ""
        if c == "\\":
            out.append("\\\\" if nxt == "" or nxt in PUNCT else "\\")
        elif c in "`*~":
            out.append("\\" + c)
        elif c == "_":
            j = i
            while j < n and s[j] == "_":
                j += 1
            prev, after = (s[i - 1] if i else ""), (s[j] if j < n else "")
            out.append(s[i:j] if prev.isalnum() and after.isalnum() else "\\_" * (j - i))
            i = j
            continue
        elif c == "]":
            out.append("\\]" if nxt in ("", "(", "[") else "]")
        elif c == "<" and _TAG_START.match(s, i):
            out.append("\\<")
        elif c == "&" and _ENTITY.match(s, i):
            out.append("\\&")
        elif c == "|" and table:
            out.append("\\|")
        else:
            out.append(c)
        i += 1
    return "".join(out)


def escape_line_start(text: str) -> str:
    """Escape the start of an already escaped line: a heading or list marker, or the ``[`` of a
    link reference definition (``[x]: http://...`` would turn a later ``[x]`` into a link)."""
    m = re.match(r"\d{1,9}(?=[.)](?:\s|$))", text)
    if m:
        return text[: m.end()] + "\\" + text[m.end():]
    return "\\" + text if re.match(r"(?:#{1,6}|[+-])(?:\s|$)|\[", text) else text


def inline_tokens(text: str) -> list[tuple[str, str]]:
    """Tokens of one line of the inline subset: ``("text", s)``, ``("code", s)``, ``("esc", ch)``,
    ``("strong", "")``, ``("/strong", "")``.

    Code spans bind tighter than bold and backslash escapes do not work in them (as in
    CommonMark): ```**kwargs**``` is code, and a ``**`` inside a code span never opens or
    closes bold, so the tokens always nest.
    """
    atoms: list[tuple[str, str]] = []  # ("c", ch) | ("code", s) | ("esc", ch)
    s, n, i = str(text), len(text), 0
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n and s[i + 1] in PUNCT:
            atoms.append(("esc", s[i + 1]))
            i += 2
            continue
        if c == "`":
            j = s.find("`", i + 1)
            if j > i + 1:
                atoms.append(("code", s[i + 1:j]))
                i = j + 1
                continue
        atoms.append(("c", c))
        i += 1
    masked = "".join(v if k == "c" else "x" for k, v in atoms)  # '*' only where a plain character is one
    marks: dict[int, tuple[str, int]] = {}
    for m in _BOLD.finditer(masked):
        marks[m.start()] = ("strong", 2)
        marks[m.end() - 2] = ("/strong", 2)
    tokens: list[tuple[str, str]] = []
    k = 0
    while k < len(atoms):
        if k in marks:
            kind, width = marks[k]
            tokens.append((kind, ""))
            k += width
            continue
        kind, v = atoms[k]
        if kind == "c":
            if tokens and tokens[-1][0] == "text":
                tokens[-1] = ("text", tokens[-1][1] + v)
            else:
                tokens.append(("text", v))
        else:
            tokens.append((kind, v))
        k += 1
    return tokens


def _inline_markdown(text: str, table: bool = False) -> str:
    parts = []
    for kind, v in inline_tokens(text):
        if kind == "text":
            parts.append(escape_markdown(v, table=table))
        elif kind == "code":
            parts.append(f"`{v}`")
        elif kind == "esc":
            parts.append("\\" + v)
        else:
            parts.append("**")
    return "".join(parts)


def _table_row(line: str) -> str:
    """Escape the cells of a pipe-table row in place (the pipes and spacing are kept)."""
    out, cur, i = [], [], 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            cur.append(line[i:i + 2])
            i += 2
            continue
        if line[i] == "|":
            out.append(_cell("".join(cur)))
            out.append("|")
            cur = []
        else:
            cur.append(line[i])
        i += 1
    out.append(_cell("".join(cur)))
    return "".join(out)


def _cell(seg: str) -> str:
    core = seg.strip()
    if not core:
        return seg
    lead = seg[: len(seg) - len(seg.lstrip())]
    trail = seg[len(seg.rstrip()):]
    return lead + _inline_markdown(core) + trail


def sanitize_markdown(text: str) -> str:
    """Markdown in the subset of :func:`~noisylab.report.html.markdown_to_html`, with everything else escaped.

    Pipe tables, ``#`` headings, ``-``/``*`` bullets, ```code```, ``**bold**`` and
    backslash escapes stay markup; links, images, raw HTML, emphasis with ``_``/``*``
    and stray backticks become text, as the HTML side shows them.  Text that uses
    only the subset comes back unchanged.
    """
    from .html import _is_separator

    out = []
    for line in str(text).split("\n"):
        if not line.strip() or _is_separator(line):
            out.append(line)
        elif line.lstrip().startswith("|"):
            out.append(_table_row(line))
        else:
            m = _BULLET_PREFIX.match(line)
            lead, body = (m.group(1), m.group(2)) if m else (line[: len(line) - len(line.lstrip())], line.lstrip())
            body = _inline_markdown(body)
            out.append(lead + ("\\" + body if body.startswith("[") else body))
    return "\n".join(out)
