"""HTML bodies of inbound mail: sanitising for display and converting to plain text.

`sanitize_html` is what operators see (nh3, i.e. ammonia); `html_to_text` feeds the
classifiers and the reply splitter when a message has no usable text/plain part.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nh3

# Basic formatting, structure, tables, links and images; nothing that runs or styles the page.
_TAGS = {
    "a", "abbr", "b", "big", "blockquote", "br", "caption", "center", "cite", "code", "col",
    "colgroup", "dd", "del", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "small",
    "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead",
    "tr", "tt", "u", "ul",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan", "align", "valign"},
    "th": {"colspan", "rowspan", "align", "valign"},
    "font": {"color"},
    "ol": {"start"},
    "*": {"style"},
}
# Only presentational CSS survives; no url(), positioning or display tricks.
_STYLE_PROPERTIES = {
    "color", "background-color", "font-weight", "font-style", "text-decoration",
    "text-align", "font-size",
}  # fmt: skip
# cid: keeps inline images (resolved against Attachment.content_id by the UI).
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid"}
# Dropped together with their content (ammonia keeps the text of unknown tags otherwise).
_CLEAN_CONTENT = {"script", "style", "head", "title", "noscript", "template", "object"}


def sanitize_html(html: str) -> str:
    """Safe HTML for display: scripts, styles sheets, forms, event handlers removed."""
    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags=_CLEAN_CONTENT,
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        filter_style_properties=_STYLE_PROPERTIES,
        link_rel="noopener noreferrer nofollow",
    )


# Tags that start a new line in the text rendering.
_BLOCK = {
    "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
    "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
    "tbody", "tfoot", "thead", "tr", "ul",
}  # fmt: skip
# Paragraph-like tags get an empty line around them.
_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol"}
_SKIP = {"script", "style", "head", "title", "noscript", "template", "object", "svg"}
_VOID_SKIP = {"meta", "link", "base"}
_SPACES = re.compile(r"[ \t\r\n\f\u200b]+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.lists: list[list[int]] = []  # one [counter] per open <ol>, [-1] per <ul>
        self.cells = 0

    # Newline markers: "\n" is a line break, "\n\n" a paragraph break; merged in text().
    def _newline(self, paragraph: bool = False) -> None:
        self.out.append("\x00P" if paragraph else "\x00N")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
            return
        if self.skip or tag in _VOID_SKIP:
            return
        if tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self._newline()
            if self.lists and self.lists[-1][0] >= 0:
                self.lists[-1][0] += 1
                self.out.append(f"{self.lists[-1][0]}. ")
            else:
                self.out.append("- ")
        elif tag in ("td", "th"):
            if self.cells:
                self.out.append("\t")
            self.cells += 1
        elif tag in _BLOCK:
            self._newline(tag in _PARAGRAPH)
            if tag == "ol":
                self.lists.append([0])
            elif tag == "ul":
                self.lists.append([-1])
            elif tag == "tr":
                self.cells = 0
            elif tag == "pre":
                self.pre += 1
            elif tag == "hr":
                self.out.append("----------")
                self._newline()
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt and alt.strip():
                self.out.append(f"[{alt.strip()}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if tag in _BLOCK:
            if tag in ("ol", "ul") and self.lists:
                self.lists.pop()
            elif tag == "pre":
                self.pre = max(0, self.pre - 1)
            self._newline(tag in _PARAGRAPH)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:  # <script/> has no content to skip
            return
        self.handle_starttag(tag, attrs)
        if tag not in ("br", "img", "hr"):
            self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            self.out.append(data.replace("\r\n", "\n"))
        else:
            self.out.append(_SPACES.sub(" ", data.replace("\xa0", " ")))

    def text(self) -> str:
        # Resolve the block markers: runs of markers collapse into the strongest one.
        lines: list[str] = []
        pending = ""  # "" | "\n" | "\n\n"
        for chunk in self.out:
            if chunk == "\x00N":
                pending = pending or "\n"
            elif chunk == "\x00P":
                pending = "\n\n"
            else:
                if pending and lines:
                    lines.append(pending)
                pending = ""
                lines.append(chunk)
        text = "".join(lines)
        # Trim spaces around line ends (layout whitespace between block tags).
        text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)
        text = re.sub(r"\n{3,}", "\n\n", text)
        return text.strip()


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML body: paragraphs, line breaks and list items kept."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 - HTMLParser is lenient, but never fail a mail on it
        pass
    return parser.text()
