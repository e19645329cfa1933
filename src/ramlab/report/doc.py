"""The report as a document: blocks rendered both as Markdown and as one self-contained HTML page.

Inline markup in text and table cells: `code`, [text](#link), **bold**, and `{#name}` for a
link target inside a table cell. The HTML page embeds its figures (base64), so it can be
sent alone.
"""

from __future__ import annotations

import base64
import html
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Doc:
    """Blocks rendered both as Markdown and as HTML (inline: `code`, [text](#link), **bold**)."""

    root: Path
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, level: int, text: str, anchor: str | None = None) -> None:
        self.blocks.append(("heading", (level, text, anchor)))

    def para(self, text: str) -> None:
        self.blocks.append(("para", text))

    def plain(self, text: str) -> None:
        """A paragraph of text from outside (a preset's description), shown as written: no
        markup in it is read (`0.1*infogain*` is not emphasis, `<b>` is not a tag)."""
        self.blocks.append(("plain", text))

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        if rows:
            self.blocks.append(("table", (headers, rows)))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(("figure", (path, caption)))

    def details(self, summary: str, code: str) -> None:
        self.blocks.append(("details", (summary, code)))

    # Markdown ----------------------------------------------------------------------------
    def markdown(self) -> str:
        out = []
        for kind, value in self.blocks:
            if kind == "heading":
                level, text, anchor = value
                out.append(("" if not anchor else f'<a id="{anchor}"></a>\n') + "#" * level + " " + text)
            elif kind == "para":
                out.append(value)
            elif kind == "plain":
                out.append(_MD_ACTIVE.sub(r"\\\g<0>", value))
            elif kind == "table":
                headers, rows = value
                lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
                out.append("\n".join(lines))
            elif kind == "figure":
                path, caption = value
                alt = _LINK.sub(r"\1", caption)  # no brackets inside an image's alt text
                out.append(f"![{alt}]({link_target(path.relative_to(self.root).as_posix())})\n\n*{caption}*")
            elif kind == "details":
                summary, code = value
                out.append(
                    f"<details><summary>{html.escape(summary)}</summary>\n\n```yaml\n{code.rstrip()}\n```\n\n</details>"
                )
        return "\n\n".join(out) + "\n"

    # HTML --------------------------------------------------------------------------------
    def html(self, title: str) -> str:
        body = []
        for kind, value in self.blocks:
            if kind == "heading":
                level, text, anchor = value
                ident = f' id="{anchor}"' if anchor else ""
                body.append(f"<h{level}{ident}>{_inline(text)}</h{level}>")
            elif kind == "para":
                body.append(f"<p>{_inline(value)}</p>")
            elif kind == "plain":
                body.append(f"<p>{html.escape(value, quote=False)}</p>")
            elif kind == "table":
                headers, rows = value
                head = "".join(f"<th>{_inline(h)}</th>" for h in headers)
                lines = "".join(
                    "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>")
            elif kind == "figure":
                path, caption = value
                mime = "image/gif" if path.suffix == ".gif" else "image/png"
                data = base64.b64encode(path.read_bytes()).decode()
                alt = html.escape(_LINK.sub(r"\1", caption))
                body.append(
                    f'<figure><img src="data:{mime};base64,{data}" alt="{alt}">'
                    f"<figcaption>{_inline(caption)}</figcaption></figure>"
                )
            elif kind == "details":
                summary, code = value
                body.append(
                    f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(code)}</pre></details>"
                )
        return HTML_PAGE.format(title=html.escape(title), body="\n".join(body))


_CODE = re.compile(r"`([^`]+)`")
_MD_ACTIVE = re.compile(r"[\\`*_\[\]<>&#|~]")  # Markdown's markup characters, backslash-escaped in plain text
_ANCHOR = re.compile(r"\{#([A-Za-z0-9_-]+)\}")  # {#name}: a link target inside a table cell


def _md_cell(cell: str) -> str:
    """A table cell in Markdown: `|` escaped, and `<`, `>`, `&` outside code spans, which a
    renderer would take for HTML (a damaged file's reason quotes `<stream end>`)."""
    parts = _CODE.split(cell.replace("|", "\\|"))  # odd indices: the code spans' contents
    text = "".join(
        f"`{part}`" if i % 2 else part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        for i, part in enumerate(parts)
    )
    return _ANCHOR.sub(r'<a id="\1"></a>', text)


_LINK = re.compile(r"\[([^\]]+)\]\((?:<([^>]+)>|([^)\s]+))\)")  # [text](target) or [text](<target>)


_ESCAPED_LINK = re.compile(r"\[([^\]]+)\]\((?:&lt;(.+?)&gt;|([^)\s]+))\)")


def link_target(path: str) -> str:
    """A relative path as a Markdown link target, percent-encoded: a space or a parenthesis
    would end a bare target (a run folder named "ram sp 0")."""
    return urllib.parse.quote(path, safe="/")


_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline(text: str) -> str:
    """A line's Markdown in HTML. Code spans are literal: links and bold apply outside them
    only (a run named `fc [y](javascript:...)` became a link inside its code span), and a
    link goes only to an anchor or a relative path."""
    parts = _CODE.split(html.escape(text, quote=False))  # odd indices: the code spans' contents
    return "".join(f"<code>{part}</code>" if i % 2 else _inline_text(part) for i, part in enumerate(parts))


def _inline_text(out: str) -> str:
    out = _ANCHOR.sub(r'<a id="\1"></a>', out)
    # On escaped text: a <target> reads &lt;target&gt;, and the target is escaped already.
    out = _ESCAPED_LINK.sub(_html_link, out)
    return _BOLD.sub(r"<strong>\1</strong>", out)


def _html_link(match: re.Match) -> str:
    target = match[2] or match[3]
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target):  # a scheme (javascript:, https:): not ours
        return match[0]
    return f'<a href="{target.replace(chr(34), "&quot;")}">{match[1]}</a>'


HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem;
       color: #111; line-height: 1.45; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
th, td {{ border: 1px solid #bbb; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }}
th {{ background: #eee; }}
img {{ max-width: 100%; }}
figure {{ margin: 1rem 0; }} figcaption {{ font-style: italic; font-size: 0.9rem; }}
code, pre {{ background: #f4f4f4; }} pre {{ padding: 0.5rem; overflow-x: auto; font-size: 0.8rem; }}
@media print {{ details {{ display: none; }} }}
</style></head><body>
{body}
</body></html>
"""
