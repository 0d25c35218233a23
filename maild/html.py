"""HTML bodies of inbound mail: sanitising for display and converting to plain text.

`sanitize_html` is what operators see (nh3, i.e. ammonia); `html_to_text` feeds the
classifiers and the reply splitter when a message has no usable text/plain part.
"""

from __future__ import annotations

import re
from html import unescape

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
    # class/id carry the reply markers maild.quoting looks for (gmail_quote, divRplyFwdMsg);
    # show this HTML isolated (sandboxed iframe) so they cannot clash with the UI's own.
    "*": {"style", "class", "id"},
}
# Only presentational CSS survives; no url(), positioning or display tricks. border-top is
# Outlook's "Da:/Inviato:" box, another reply marker.
_STYLE_PROPERTIES = {
    "color", "background-color", "font-weight", "font-style", "text-decoration",
    "text-align", "font-size", "border-top",
}  # fmt: skip
# cid: keeps inline images (resolved against Attachment.content_id by the UI).
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid"}
# Dropped together with their content (ammonia keeps the text of unknown tags otherwise).
_CLEAN_CONTENT = {"script", "style", "head", "title", "noscript", "template", "object"}


def _only_embedded_images(tag: str, attribute: str, value: str) -> str | None:
    # Remote images are tracking pixels as often as not: loading them would tell the sender
    # when an operator opened the ticket. Embedded (cid:) images stay.
    if tag == "img" and attribute == "src" and not value.lower().startswith("cid:"):
        return None
    return value


def sanitize_html(html: str) -> str:
    """Safe HTML for display: scripts, style sheets, forms, event handlers and remote
    images removed; basic formatting, tables, links and cid: images kept."""
    return nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags=_CLEAN_CONTENT,
        attributes=_ATTRIBUTES,
        attribute_filter=_only_embedded_images,
        url_schemes=_URL_SCHEMES,
        filter_style_properties=_STYLE_PROPERTIES,
        link_rel="noopener noreferrer nofollow",
    )


# Tags that start a new line in the text rendering.
_BLOCK = {
    "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
    "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "tfoot", "thead",
    "tr", "ul",
}  # fmt: skip
# Paragraph-like tags get an empty line around them.
_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol"}
_TEXT_TAGS = _BLOCK | {"br", "img", "td", "th"}
_SKIP = {"script", "style", "head", "title", "noscript", "template", "object", "svg"}
_TOKEN = re.compile(r"<(/?)([a-z0-9]+)([^>]*)>")
_ALT = re.compile(r'alt="([^"]*)"')
_SPACES = re.compile(r"[ \t\r\n\f\u200b]+")
_PARA, _LINE = "\x00P", "\x00N"  # block markers, resolved in _join


def _join(out: list[str]) -> str:
    # Runs of block markers collapse into the strongest one; none at the very start.
    chunks: list[str] = []
    pending = ""
    for chunk in out:
        if chunk == _LINE:
            pending = pending or "\n"
        elif chunk == _PARA:
            pending = "\n\n"
        elif chunk:
            if pending and chunks:
                chunks.append(pending)
            pending = ""
            chunks.append(chunk)
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", "".join(chunks))
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text.replace("\x01", " ").replace("\x02", "\t")


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML body: paragraphs, line breaks and list items kept.

    ammonia (nh3) first reduces the document to the few structural tags that matter here,
    without attributes, comments, scripts, styles or <head>; the clean, well-formed result
    is then cheap to walk with one regular expression.
    """
    cleaned = nh3.clean(
        html,
        tags=_TEXT_TAGS,
        clean_content_tags=_SKIP,
        attributes={"img": {"alt"}},
        url_schemes=set(),
        link_rel=None,
    )
    out: list[str] = []
    lists: list[int] = []  # one counter per open <ol>, -1 per <ul>
    cells = 0
    pre = 0
    position = 0
    for match in _TOKEN.finditer(cleaned):
        text = cleaned[position : match.start()]
        position = match.end()
        if text:
            text = unescape(text)
            # Spaces inside <pre> are protected from the line-end trimming in _join.
            out.append(
                text.replace(" ", "\x01").replace("\t", "\x02")
                if pre
                else _SPACES.sub(" ", text.replace("\xa0", " "))
            )
        closing, tag, attrs = match.groups()
        if closing:
            if tag in _BLOCK:
                if tag in ("ol", "ul") and lists:
                    lists.pop()
                elif tag == "pre":
                    pre = max(0, pre - 1)
                out.append(_PARA if tag in _PARAGRAPH else _LINE)
        elif tag == "br":
            out.append("\n")
        elif tag == "img":
            alt = _ALT.search(attrs)
            if alt and alt.group(1).strip():
                out.append(f"[{unescape(alt.group(1)).strip()}]")
        elif tag in ("td", "th"):
            if cells:
                out.append("\t")
            cells += 1
        elif tag == "li":
            out.append(_LINE)
            if lists and lists[-1] >= 0:
                lists[-1] += 1
                out.append(f"{lists[-1]}. ")
            else:
                out.append("- ")
        elif tag in _BLOCK:
            out.append(_PARA if tag in _PARAGRAPH else _LINE)
            if tag == "ol":
                lists.append(0)
            elif tag == "ul":
                lists.append(-1)
            elif tag == "tr":
                cells = 0
            elif tag == "pre":
                pre += 1
            elif tag == "hr":
                out.extend(("----------", _LINE))
    tail = cleaned[position:]
    if tail:
        out.append(_SPACES.sub(" ", unescape(tail).replace("\xa0", " ")))
    return _join(out)
