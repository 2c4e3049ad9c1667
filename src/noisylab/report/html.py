"""HTML side of the report: a small Markdown subset to HTML, tables, and the page template.

The page is one self-contained file: inline CSS, images as ``data:image/png;base64``
URIs, one tiny inline script, and a Content-Security-Policy that forbids any network
access (``default-src 'none'``; images only from ``data:``; the script allowed by its
SHA-256 hash), so the browser itself guarantees the report loads nothing from outside.

The Markdown subset understood by :func:`markdown_to_html` is what reports need:
pipe tables (``| a | b |`` with a ``|---|---:|`` separator row and optional
alignment colons), ``#`` headings, ``-``/``*`` bullet lists, paragraphs, the
inline forms ```code``` and ``**bold**`` (a code span binds tighter than bold, as in
CommonMark, so ```**kwargs**``` is code and tags always nest), and backslash escapes
of ASCII punctuation (``\\*`` is a literal ``*``).  Everything else is shown as text;
every user string is escaped with :func:`html.escape`, so no markup ever passes through.
"""
from __future__ import annotations

import base64
import hashlib
import re
from html import escape

from ._markdown import inline_tokens

__all__ = ["LOAD_SCRIPT", "markdown_to_html", "page", "split_table_row", "table_html"]

_SEP_CELL = re.compile(r"^\s*:?-{3,}:?\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*]\s+(.*)$")

#: Runs once the page (and so every image) has loaded: records on ``<body>`` how many
#: ``<img>`` elements there are and how many decoded, for automated checks in a browser.
LOAD_SCRIPT = (
    'window.addEventListener("load",function(){'
    "var im=document.images,ok=0;"
    "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}}"
    "var d=document.body.dataset;"
    "d.imagesTotal=String(im.length);d.imagesDecoded=String(ok);"
    'd.imagesOk=(ok===im.length)?"true":"false";});'
)

_CSS = """
:root{--fg:#1d2330;--muted:#5b6475;--line:#d9dee7;--bg:#ffffff;--soft:#f4f6fa;--accent:#2d5fa8}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"DejaVu Sans",sans-serif}
header{padding:24px 32px 12px;border-bottom:1px solid var(--line);background:var(--soft)}
header h1{margin:0 0 4px;font-size:26px}
header p{margin:0;color:var(--muted)}
nav{padding:8px 32px;border-bottom:1px solid var(--line);font-size:14px}
nav a{color:var(--accent);text-decoration:none;margin-right:16px;white-space:nowrap}
main{padding:8px 32px 48px;max-width:1280px}
section{margin-top:24px}
h2{font-size:20px;border-bottom:2px solid var(--line);padding-bottom:4px}
h3{font-size:16px;margin-bottom:6px}
figure{margin:12px 0 20px}
figure img{max-width:100%;height:auto;border:1px solid var(--line);background:#fff}
figcaption{color:var(--muted);font-size:13px;margin-top:4px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:14px}
th,td{border:1px solid var(--line);padding:4px 10px;text-align:left;vertical-align:top}
th{background:var(--soft)}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.text{max-width:640px;white-space:pre-wrap;word-break:break-word}
ul.facts{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:8px 24px}
ul.facts li{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:6px 12px}
ul.facts b{display:block;font-size:18px}
code{background:var(--soft);padding:0 3px;border-radius:3px}
details{margin:4px 0 8px}
summary{cursor:pointer;color:var(--accent)}
footer{color:var(--muted);font-size:12px;padding:0 32px 24px}
"""


def _inline(text: str) -> str:
    """Escape ``text`` and turn ```code``` and ``**bold**`` into tags (see :func:`._markdown.inline_tokens`)."""
    parts = []
    for kind, v in inline_tokens(text):
        if kind in ("text", "esc"):
            parts.append(escape(v, quote=True))
        elif kind == "code":
            parts.append(f"<code>{escape(v, quote=True)}</code>")
        else:
            parts.append(f"<{kind}>")
    return "".join(parts)


def split_table_row(line: str) -> list[str]:
    """Cells of one Markdown table row; ``\\|`` is a literal bar inside a cell."""
    s = line.strip()
    s = s.removeprefix("|")
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    cells, cur, i = [], [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s) and s[i + 1] == "|":
            cur.append("|")
            i += 2
            continue
        if s[i] == "|":
            cells.append("".join(cur).strip())
            cur = []
        else:
            cur.append(s[i])
        i += 1
    cells.append("".join(cur).strip())
    return cells


def _is_separator(line: str) -> bool:
    if "-" not in line or "|" not in line:
        return False
    return all(_SEP_CELL.match(c) for c in split_table_row(line))


def _align(cell: str) -> str | None:
    c = cell.strip()
    if c.startswith(":") and c.endswith(":"):
        return "center"
    if c.endswith(":"):
        return "right"
    if c.startswith(":"):
        return "left"
    return None


def table_html(header, rows, *, aligns=None, numeric=None, css_class=None, inline=False) -> str:
    """An HTML table; every cell is escaped (``inline=True`` also renders `code`/**bold**).

    ``numeric[j]`` right-aligns column ``j``; ``aligns[j]`` ("left", "right",
    "center" or None) sets an explicit alignment instead.
    """
    fmt = _inline if inline else (lambda s: escape(str(s), quote=True))
    ncol = len(header)
    aligns = list(aligns) if aligns is not None else [None] * ncol
    numeric = list(numeric) if numeric is not None else [False] * ncol

    def attrs(j, kind):
        a = aligns[j] if j < len(aligns) else None
        cls = "num" if (j < len(numeric) and numeric[j]) else (kind if kind else None)
        out = f' class="{cls}"' if cls else ""
        if a:
            out += f' style="text-align:{a}"'
        return out

    head = "".join(f"<th{attrs(j, None)}>{fmt(str(h))}</th>" for j, h in enumerate(header))
    body = []
    for r in rows:
        cells = list(r) + [""] * (ncol - len(r))
        body.append("<tr>" + "".join(f"<td{attrs(j, None)}>{fmt(str(c))}</td>" for j, c in enumerate(cells[:ncol]))
                    + "</tr>")
    cls = f' class="{escape(css_class)}"' if css_class else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>" + "".join(body) + "</tbody></table>"


def markdown_to_html(text: str, *, heading_offset: int = 2) -> str:
    """Render the Markdown subset described in the module docstring; all text is escaped.

    Headings are shifted by ``heading_offset`` levels (``#`` becomes ``<h3>`` by
    default) so that they nest under the report's section titles.
    """
    lines = str(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out, para, items = [], [], []

    def flush():
        if para:
            out.append("<p>" + _inline(" ".join(p.strip() for p in para)) + "</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(it)}</li>" for it in items) + "</ul>")
            items.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            flush()
            i += 1
            continue
        if line.lstrip().startswith("|") and i + 1 < len(lines) and _is_separator(lines[i + 1]):
            flush()
            header = split_table_row(line)
            aligns = [_align(c) for c in split_table_row(lines[i + 1])]
            i += 2
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(split_table_row(lines[i]))
                i += 1
            out.append(table_html(header, rows, aligns=aligns, inline=True))
            continue
        m = _HEADING.match(line)
        if m:
            flush()
            level = min(len(m.group(1)) + heading_offset, 6)
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
            continue
        m = _BULLET.match(line)
        if m:
            if para:
                flush()
            items.append(m.group(1).strip())
            i += 1
            continue
        if items:
            flush()
        para.append(line)
        i += 1
    flush()
    return "\n".join(out)


def _script_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


def page(title: str, subtitle: str, nav: list[tuple[str, str]], body: str, footer: str) -> str:
    """The whole HTML document; ``nav`` holds (anchor id, title) pairs.  ``body`` is trusted HTML."""
    csp = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           f"script-src '{_script_hash(LOAD_SCRIPT)}'; base-uri 'none'; form-action 'none'")
    nav_html = "".join(f'<a href="#{escape(a, quote=True)}">{escape(t)}</a>' for a, t in nav)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="noisylab">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n"
        f"<script>{LOAD_SCRIPT}</script>\n"
        "</head>\n<body>\n"
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>\n"
        f'<nav aria-label="Sections">{nav_html}</nav>\n'
        f"<main>\n{body}\n</main>\n"
        f"<footer>{escape(footer)}</footer>\n"
        "</body>\n</html>\n"
    )
