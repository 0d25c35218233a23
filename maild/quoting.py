"""What the author of a reply actually wrote, without the quoted history.

mail-parser-reply (`mailparser_reply`) knows the Italian and English header blocks that
Outlook, Exchange and Notes put above the history ("Da: / Inviato: / A: / Oggetto:",
"From: / Sent:") and cuts there. Around it this module adds what it gets wrong for the mail an
Italian help desk receives:

- '>'-quoted lines are dropped wherever they are, so answers written between quoted lines
  (Thunderbird inline replies) are all kept, and the attribution line above a quote
  ("Il 13/03/26 08:02, X ha scritto:", Gmail's version wrapped over two lines, Libero's
  "Inviato da Libero Mail per Android …, 11:48AM +01:00 da X :") goes with it;
- separator lines it leaves behind ("---------- Forwarded message ---------",
  "-------- Messaggio inoltrato --------", Notes "----- X ha scritto: -----") cut the text;
- when the history is only in the HTML part, the HTML is turned into text with blockquotes
  written as '>' lines and cut at Outlook's reply header (divRplyFwdMsg, appendonsend, the
  "border-top:solid #E1E1E1" block), then read as above.

Signatures are left in place.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, NavigableString, Tag
from mailparser_reply import EmailReplyParser

LANGUAGES = ["it", "en", "de", "fr"]
_PARSER = EmailReplyParser(languages=LANGUAGES)

_INVISIBLE_RE = re.compile("[\ufeff\u200b\u200c\u200d\u2060\u00ad]")
_QUOTED_RE = re.compile(r"^\s*>")
_SPACES_RE = re.compile(r"[ \t\u00a0]+")

# Lines that open the forwarded or original message in every client we meet.
_SEPARATOR_RE = re.compile(
    r"^(?:"
    r"-{2,}\s*(?:(?:messaggio|e-?mail)\s+originale|original[e]?\s+(?:e-?mail\s+)?(?:message|nachricht)"
    r"|messaggio\s+inoltrato|forwarded\s+(?:e-?mail|message)|urspr[üu]ngliche\s+nachricht"
    r"|weitergeleitete\s+(?:nachricht|e-?mail)|message\s+d'origine|message\s+transf[ée]r[ée]"
    r"|mensaje\s+original|mensaje\s+reenviado)\s*-*"
    r"|(?:inizio\s+messaggio\s+inoltrato|begin\s+forwarded\s+message|messaggio\s+inoltrato)\s*:"
    r"|-{3,}.*\b(?:ha\s+scritto|wrote|schrieb)\b.*-{3,}"  # HCL Notes
    r")\s*$",
    re.IGNORECASE,
)
_WROTE = r"(?:ha\s+scritto|hanno\s+scritto|wrote|schrieb|a\s+écrit|escribió|escreveu|schreef)"
# An attribution that is certainly one, even with no quoted text below it (then it cuts).
_ATTRIBUTION_STRONG_RE = re.compile(
    r"^(?:"
    r"(?:il|on|am|le|el|em|op)\s.{0,250}\b" + _WROTE + r"\b.{0,80}"
    r"|.{1,200}\bha\s+scritto\s+il\s.{0,80}"  # Notes: "X <x@y> ha scritto il 24/03/2026 14:51:"
    r"|inviato\s+da\s.{0,150}\d{1,2}[:.]\d{2}.{0,150}\sda\s.{0,200}"  # Libero Mail app
    r")\s*:$",
    re.IGNORECASE,
)
# Weaker form, accepted only on the line right above quoted text.
_ATTRIBUTION_WEAK_RE = re.compile(
    r"^(?:.{0,250}\b" + _WROTE + r"\b.{0,80}|.{0,250}\d{1,2}[:.]\d{2}.{0,250}@[\w.-]+>?)\s*:$",
    re.IGNORECASE,
)
_TRAILING_JUNK_RE = re.compile(r"^(?:-{2,}|_{2,}|={2,}|\*{2,}|-- ?)$")


def new_text(text: str, html: str | None = None) -> str:
    """The part of a reply its author wrote: quoted history, forwarded text and attribution lines
    removed; signature kept.

    `html` is read when the history is only there, e.g. when `text` was made from the HTML
    part and lost its quote marks. ParsedMessage.html (sanitised, blockquotes kept) works;
    the raw HTML is better still, since it keeps Outlook's and Gmail's id/class markers."""
    if not (text or "").strip() and html:
        text = html_to_text(html)
    result, found_history = _text_pass(text or "")
    if html and (not found_history or not result) and _html_has_history(html):
        from_html, _ = _text_pass(html_to_text(html))
        if from_html:
            return from_html
    return result


def _text_pass(text: str) -> tuple[str, bool]:
    """(new text, whether any history was found)."""
    normalised = _normalise(text)
    kept = _drop_quotes_and_cut(normalised)
    reply = _PARSER.read(kept)
    first = reply.replies[0] if reply.replies else None
    # a text that starts with a header block (a bare forward) has no new text at all
    result = first.content if first is not None and not first.headers else ""
    result = _tidy(result)
    found = _squash(result) != _squash(normalised)
    return result, found


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _INVISIBLE_RE.sub("", text).replace("\u00a0", " ")
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _drop_quotes_and_cut(text: str) -> str:
    lines = text.split("\n")
    quoted = [bool(_QUOTED_RE.match(line)) for line in lines]
    drop = quoted[:]
    cut_at = len(lines)
    for i, line in enumerate(lines):
        if quoted[i]:
            continue
        stripped = line.strip()
        if _SEPARATOR_RE.match(stripped):
            cut_at = i
            break
        if not stripped.endswith(":"):
            continue
        attribution = _attribution_start(lines, quoted, i)
        if attribution is None:
            continue
        start, strong = attribution
        if _next_content_is_quoted(lines, quoted, i):
            for j in range(start, i + 1):
                drop[j] = True
        elif strong:
            cut_at = start
            break
    return "\n".join(line for j, line in enumerate(lines[:cut_at]) if not drop[j])


def _attribution_start(lines: list[str], quoted: list[bool], end: int) -> tuple[int, bool] | None:
    """Where the attribution ending at line `end` starts (it may be wrapped over 3 lines),
    and whether it is a strong one."""
    for start in range(end, max(end - 3, -1), -1):
        if start < end and (quoted[start] or not lines[start].strip()):
            break
        joined = _SPACES_RE.sub(" ", " ".join(s.strip() for s in lines[start : end + 1]))
        if _ATTRIBUTION_STRONG_RE.match(joined):
            return start, True
    if _ATTRIBUTION_WEAK_RE.match(_SPACES_RE.sub(" ", lines[end].strip())):
        return end, False
    return None


def _next_content_is_quoted(lines: list[str], quoted: list[bool], i: int) -> bool:
    for j in range(i + 1, len(lines)):
        if lines[j].strip():
            return quoted[j]
    return False


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip("\n").split("\n")]
    while lines and (not lines[-1].strip() or _TRAILING_JUNK_RE.match(lines[-1].strip())):
        lines.pop()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- HTML ---------------------------------------------------------------------------------

# Elements where the quoted history starts in HTML replies: everything from there on is history.
_HISTORY_IDS = re.compile(
    r"^(?:x_)?(?:divRplyFwdMsg|appendonsend|OLK_SRC_BODY_SECTION|zwchr"
    r"|mail-editor-reference-message-container)$",
    re.IGNORECASE,
)
_HISTORY_CLASSES = {"OutlookMessageHeader", "yahoo_quoted_begin"}
_OUTLOOK_HEADER_STYLE = re.compile(
    r"border-top\s*:\s*solid\s+#(?:E1E1E1|B5C4DF)", re.IGNORECASE
)  # Outlook desktop's "Da:/Inviato:" box
_SKIP_TAGS = {"head", "style", "script", "title", "meta", "xml", "template"}
_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "fieldset",
    "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
    "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul", "body", "html",
}  # fmt: skip


def _is_history_start(tag: Tag) -> bool:
    if _HISTORY_IDS.match(tag.get("id") or ""):
        return True
    if _HISTORY_CLASSES.intersection(tag.get("class") or []):
        return True
    return tag.name == "div" and bool(_OUTLOOK_HEADER_STYLE.search(tag.get("style") or ""))


def _is_quote(tag: Tag) -> bool:
    if tag.name == "blockquote":
        return True
    # Gmail's quote is a blockquote inside div.gmail_quote; only the blockquote is quoted so the
    # gmail_attr line above it reads as an attribution.
    # Yahoo's and GMX/web.de's quote containers
    return tag.name == "div" and (
        "yahoo_quoted" in (tag.get("class") or []) or tag.get("name") == "quote"
    )


def _html_has_history(html: str) -> bool:
    soup = BeautifulSoup(html, "html.parser")
    return any(_is_history_start(t) or _is_quote(t) for t in soup.find_all(True))


_BREAK = "\x00"  # a block boundary: becomes one line break, however many meet


class _Renderer:
    """HTML to plain text: blocks on their own lines, blockquotes as '>' lines, and nothing
    after the first history marker."""

    def __init__(self) -> None:
        self.stopped = False

    def render(self, node: Tag) -> str:
        parts: list[str] = []
        for child in node.children:
            if self.stopped:
                break
            if isinstance(child, NavigableString):
                if type(child) is NavigableString:  # not a comment, doctype or CDATA
                    # collapse source whitespace, but keep &nbsp; so an empty "<p>&nbsp;</p>" stays a blank line
                    parts.append(re.sub(r"[ \t\r\n\f]+", " ", str(child)))
                continue
            if not isinstance(child, Tag) or child.name in _SKIP_TAGS:
                continue
            if _is_history_start(child):
                self.stopped = True
                break
            if child.name == "br":
                parts.append("\n")
            elif _is_quote(child):
                inner = _finish(self.render(child))
                quoted = "\n".join("> " + line if line else ">" for line in inner.split("\n"))
                parts.append(_BREAK + quoted + _BREAK)
            elif child.name == "pre":
                parts.append(_BREAK + child.get_text() + _BREAK)
            elif child.name in ("td", "th"):
                parts.append(self.render(child) + " ")
            elif child.name in _BLOCK_TAGS:
                parts.append(_BREAK + self.render(child) + _BREAK)
            else:
                parts.append(self.render(child))
        return "".join(parts)


def _finish(raw: str) -> str:
    raw = re.sub("[ \t]*" + _BREAK + "[" + _BREAK + " \t]*", _BREAK, raw)
    raw = re.sub("\n?" + _BREAK + "\n?", "\n", raw)
    lines = [line.strip() for line in raw.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def html_to_text(html: str) -> str:
    """Readable text of an HTML body, with quoted parts as '>' lines and the history after
    Outlook's reply header left out."""
    soup = BeautifulSoup(html, "html.parser")
    return _finish(_Renderer().render(soup))
