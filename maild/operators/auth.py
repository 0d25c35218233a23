"""Is a message really from the operator it claims? Read from Authentication-Results.

RFC 8601: `authserv-id [version] ; method=result (comment) ptype.prop=value ; ...`.
The consortium's MTA adds (and should strip forged copies of) the header naming itself
(`service.trusted_authserv_id`); a dmarc=fail or spf=fail there makes the message untrusted.
Without a configured id every Authentication-Results header counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMMENT = re.compile(r"\([^()]*\)")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_RESULT = re.compile(r"^\s*([A-Za-z0-9_.-]+)(?:/\d+)?\s*=\s*([A-Za-z0-9_-]+)")
FAILING = {"dmarc": {"fail"}, "spf": {"fail"}}


@dataclass(frozen=True)
class AuthResults:
    authserv_id: str
    results: dict[str, str]  # method -> result (last one wins), lower-case


def parse_authentication_results(value: str) -> AuthResults | None:
    """One header value; None when it has no authserv-id."""
    text = " ".join(value.split())
    while True:  # comments may nest: strip innermost first
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    text = _QUOTED.sub('""', text)
    parts = text.split(";")
    head = parts[0].split()
    if not head:
        return None
    results: dict[str, str] = {}
    for part in parts[1:]:
        m = _RESULT.match(part)
        if m:
            results[m.group(1).lower()] = m.group(2).lower()
    return AuthResults(head[0].lower(), results)


def authentication_failures(headers: list[str], trusted_authserv_id: str | None) -> list[str]:
    """The failing checks ("dmarc=fail", ...) in the headers we trust; empty: trusted."""
    wanted = trusted_authserv_id.lower() if trusted_authserv_id else None
    failures: list[str] = []
    for value in headers:
        parsed = parse_authentication_results(value)
        if parsed is None or (wanted is not None and parsed.authserv_id != wanted):
            continue
        for method, bad in FAILING.items():
            result = parsed.results.get(method)
            if result in bad:
                failures.append(f"{method}={result}")
    return list(dict.fromkeys(failures))


__all__ = ["AuthResults", "authentication_failures", "parse_authentication_results"]
