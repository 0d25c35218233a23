"""Lower-casing for quick substring tests that stand before case-insensitive regexes.

A case-insensitive regular expression over a long body costs far more than `needle in
text.lower()`. For the substring test to be a safe pre-test, every text such a regex
matches must contain the lower-cased needle: str.lower() agrees with re.IGNORECASE
except for four letters the latter takes for ASCII ones, mapped here first.
"""

from __future__ import annotations

_IGNORECASE_ODD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
_ODD_LETTERS = "\u0130\u0131\u017f\u212a"


def lowered(text: str) -> str:
    if any(c in text for c in _ODD_LETTERS):
        text = text.translate(_IGNORECASE_ODD)
    return text.lower()
