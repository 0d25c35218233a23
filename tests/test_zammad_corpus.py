"""Every Zammad test mail parses, and matches Zammad's expectations where they are comparable.

The corpus (AGPL-3.0 test data from zammad/zammad, see ../shared/corpus/zammad/SOURCE.md) is
real-world mail: odd charsets, HTML-only, bounces, broken MIME. Zammad's `.yml` records what
Zammad makes of each file; where Zammad itself is wrong or renders things its own way, the
difference is listed below with a reason instead of being skipped wholesale.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import html
import re
from pathlib import Path

import pytest
import yaml

from maild.parse import parse_message

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "zammad"
BOXES = sorted(CORPUS.glob("*.box"))

# --- Justified differences from Zammad's expectations (file stem -> reason) -----------------

SUBJECT_EXCEPTIONS = {
    "mail018": "Zammad leaves the unicode-1-1-utf-7 encoded word undecoded (+ANw-); we decode it",
}
FROM_EMAIL_EXCEPTIONS = {
    "mail035": "Zammad keeps the quotes of a quoted-string-only From; we give the bare address",
    "mail076": "malformed From ('\"x\"@example.com>'): Zammad keeps the stray '>'",
    "mail117": "we never decode RFC 2047 words inside an addr-spec (RFC 2047 s.5; spoofing)",
    "mail118": "we never decode RFC 2047 words inside an addr-spec (RFC 2047 s.5; spoofing)",
}
FROM_NAME_EXCEPTIONS = {
    "mail046": "raw 8-bit GBK name: Zammad mis-decodes it, we use the GB charset the mail declares",
    "mail065": "Zammad splits the name at the comma inside the encoded word; we decode 'Bürling, Andreas'",
    "mail076": "malformed From; Zammad's name is a fragment of the address",
    "mail087": "'From: Test test@example.com' has no display name; Zammad copies the whole value",
    "mail092": "we keep the RFC 5322 comment '(Mail Delivery System)' in the display name",
}
BODY_EXCEPTIONS = {
    "mail018": "Zammad leaves the UTF-7 body undecoded (+APw-); we decode it",
    # (its similarity passes only because the 120 kB text is mostly ASCII; the check costs 50 s)
    "mail023": "undeclared 8-bit GB text: we apply the UTF-8 -> windows-1252 rule, Zammad guesses GB",
    "mail025": "we extract the inline uuencoded block as an attachment; Zammad leaves it in the text",
    "mail026": "HTML body with no visible text: Zammad shows its <title>, we show nothing",
    "mail054": "broken header section: Zammad loses the body, we repair the headers and keep it",
    "mail060": "UTF-8 and Latin-1 bytes mixed under the unknown label iso-gb2312: no right answer",
    "mail087": "Zammad turns the text part that follows the PDF into an attachment; we keep it as body",
    "mail105": "boundary missing and QP on the multipart: we recover the text, Zammad shows nothing",
}
ATTACHMENT_EXCEPTIONS = {
    # (stem, expected filename) -> reason
    (
        "mail085",
        "document.html",
    ): "2nd text/html of the chosen HTML alternative: we keep it as body",
    ("mail087", "file"): "the text part after the PDF is our body (see BODY_EXCEPTIONS)",
}


# --- Loading -----------------------------------------------------------------------------------


class _ZammadLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml: 5x faster
    pass


_ZammadLoader.add_multi_constructor(
    "!ruby/", lambda loader, _suffix, node: loader.construct_mapping(node, deep=True)
)
_ZammadLoader.add_constructor(
    "!binary", lambda loader, node: base64.b64decode(loader.construct_scalar(node))
)


def _expected(box: Path) -> dict:
    with box.with_suffix(".yml").open("rb") as handle:
        return yaml.load(handle, Loader=_ZammadLoader)  # noqa: S506 - SafeLoader subclass


def _squash(text: str) -> str:
    """Text without any whitespace: HTML layout, wrapping and CJK spacing differ harmlessly."""
    return "".join(text.split())


def _strip_tags(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", " ", markup))


def _normalise_data(data: bytes) -> bytes:
    # Zammad turns CRLF into LF in some text parts; a re-serialised .eml writes "Name: " for an
    # empty header. Both sides get the same treatment, so binary files still compare exactly.
    return b"\n".join(line.rstrip() for line in data.replace(b"\r\n", b"\n").split(b"\n"))


def _md5(data: bytes) -> str:
    return hashlib.md5(_normalise_data(data)).hexdigest()


@pytest.fixture(scope="module", params=BOXES, ids=[box.stem for box in BOXES])
def case(request: pytest.FixtureRequest):
    box = request.param
    return box.stem, _expected(box), parse_message(box.read_bytes())


def test_corpus_present() -> None:
    assert len(BOXES) == 117


def test_subject(case) -> None:
    stem, expected, parsed = case
    if expected.get("subject") is None or stem in SUBJECT_EXCEPTIONS:
        return
    # Zammad keeps leading/trailing/folding blanks; we strip and collapse them.
    assert " ".join(parsed.subject.split()) == " ".join(expected["subject"].split())


def test_from(case) -> None:
    stem, expected, parsed = case
    if stem not in FROM_EMAIL_EXCEPTIONS:
        assert parsed.sender.email == expected["from_email"].lower()  # we lower-case
    if stem not in FROM_NAME_EXCEPTIONS:
        assert parsed.sender.name == (expected["from_display_name"] or "").strip()


def test_body(case) -> None:
    """Loose body check.

    Zammad's HTML body is its own sanitised rendering, so both sides are compared as text:
    tags stripped from Zammad's HTML and from our sanitised HTML (text/plain: our `text`),
    then all whitespace removed. It passes when one text contains the other (Zammad drops
    or adds a banner, a <title>, a signature) or they are >= 95 % similar
    (difflib ratio: a few differing characters, e.g. an image alt text).
    "no visible content" (Zammad's empty body) must be an empty body here too.
    """
    stem, expected, parsed = case
    if stem in BODY_EXCEPTIONS:
        return
    if expected["content_type"] == "text/html":
        want = _squash(_strip_tags(expected["body"]))
        got = _squash(_strip_tags(parsed.html)) if parsed.html else _squash(parsed.text)
    else:
        want, got = _squash(expected["body"]), _squash(parsed.text)
    if want == "novisiblecontent":
        assert got == ""
        return
    assert want and got, "one side is empty"
    if want in got or got in want:
        return
    ratio = difflib.SequenceMatcher(None, want, got, autojunk=False).ratio()
    assert ratio >= 0.95, f"similarity {ratio:.3f}\nwant {want[:300]!r}\ngot  {got[:300]!r}"


def test_attachments(case) -> None:
    """MD5 set of Zammad's attachment data is a subset of ours (Zammad's own check).

    Zammad also lists the original HTML alternative as 'message.html'; we keep that as
    ParsedMessage.html instead, so it is not expected among our attachments.
    """
    stem, expected, parsed = case
    ours = {_md5(attachment.data) for attachment in parsed.attachments}
    missing = []
    for attachment in expected.get("attachments") or []:
        preferences = attachment.get("preferences") or {}
        if attachment["filename"] == "message.html" and preferences.get("original-format"):
            continue
        if (stem, attachment["filename"]) in ATTACHMENT_EXCEPTIONS:
            continue
        data = attachment["data"]
        data = data if isinstance(data, bytes) else data.encode("utf-8")
        if _md5(data) not in ours:
            missing.append(attachment["filename"])
    assert not missing, f"missing {missing}; ours {[a.filename for a in parsed.attachments]}"


def test_attachment_names_are_safe(case) -> None:
    _stem, _expected_data, parsed = case
    for attachment in parsed.attachments:
        assert attachment.filename and "/" not in attachment.filename
        assert "\\" not in attachment.filename
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in attachment.filename)
