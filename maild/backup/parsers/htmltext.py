"""HTML body -> plain text and table rows (stdlib html.parser, no regex on markup).

Report mails are mostly tables: `rows` keeps every <tr> in document order with the
text of its own cells (a nested table's cells belong to the nested rows, not to the
outer cell), `text` is the readable rendering with line breaks at block elements and
a tab between cells, so line-based regexes work on HTML-only reports too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

_BLOCK = {
    "p", "div", "br", "li", "ul", "ol", "table", "tbody", "thead", "hr", "blockquote",
    "pre", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header", "footer",
}  # fmt: skip
_SKIP = {"script", "style", "title", "head"}
_SPACES = re.compile(r"[ \t\r\n\f\v\xa0]+")


def tidy(text: str) -> str:
    """Collapse runs of spaces inside each line, drop blank lines."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


@dataclass
class _Table:
    row: list[str] | None = None
    cell: list[str] | None = None


@dataclass
class HtmlDoc:
    text: str
    rows: list[list[str]] = field(default_factory=list)


class _Walker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.rows: list[list[str]] = []
        self.tables: list[_Table] = [_Table()]  # bottom frame: cells outside any <table>
        self.skip = 0
        self.pre = 0

    # -- cells and rows -------------------------------------------------------------
    def _open_cell(self) -> list[str] | None:
        for frame in reversed(self.tables):
            if frame.cell is not None:
                return frame.cell
        return None

    def _close_cell(self, frame: _Table) -> None:
        if frame.cell is not None:
            if frame.row is None:
                frame.row = []
                self.rows.append(frame.row)
            frame.row.append(tidy("".join(frame.cell)))
            frame.cell = None

    def _close_row(self, frame: _Table) -> None:
        self._close_cell(frame)
        if frame.row is not None:
            frame.row = None
            self.out.append("\n")

    def _emit(self, piece: str) -> None:
        self.out.append(piece)
        cell = self._open_cell()
        if cell is not None:
            cell.append(piece)

    # -- HTMLParser hooks -----------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
            return
        frame = self.tables[-1]
        if tag == "table":
            self.out.append("\n")
            self.tables.append(_Table())
        elif tag == "tr":
            self._close_row(frame)
            frame.row = []
            self.rows.append(frame.row)
        elif tag in ("td", "th"):
            had_cells = bool(frame.row) or frame.cell is not None
            self._close_cell(frame)
            if frame.row is None:
                frame.row = []
                self.rows.append(frame.row)
            if had_cells:
                self.out.append("\t")
            frame.cell = []
        elif tag in _BLOCK:
            if tag == "pre":
                self.pre += 1
            self._emit("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self._emit("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        frame = self.tables[-1]
        if tag == "table":
            if len(self.tables) > 1:
                self._close_row(frame)
                self.tables.pop()
            self.out.append("\n")
        elif tag == "tr":
            self._close_row(frame)
        elif tag in ("td", "th"):
            self._close_cell(frame)
        elif tag in _BLOCK:
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
            self._emit("\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            self._emit(data)
        else:
            self._emit(_SPACES.sub(" ", data))

    def result(self) -> HtmlDoc:
        while len(self.tables) > 1:
            self._close_row(self.tables.pop())
        self._close_row(self.tables[0])
        text = "".join(self.out)
        lines = []
        for line in text.split("\n"):
            cells = [_SPACES.sub(" ", c).strip() for c in line.split("\t")]
            if any(cells):
                lines.append("\t".join(cells).strip("\t"))
        return HtmlDoc(text="\n".join(lines), rows=self.rows)


def html_to_doc(html: str) -> HtmlDoc:
    walker = _Walker()
    walker.feed(html)
    walker.close()
    return walker.result()
