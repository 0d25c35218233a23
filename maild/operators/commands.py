"""Commands at the top of an operator's reply: `#prendo`, `#assign laura`, `#stato risolto`...

Only the syntax is read here (which command, which value); whether a value names a real
operator, ente or ticket is checked by `maild.operators.lifecycle` before anything changes.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from maild.models import CHIUSO, IN_ATTESA, RISOLTO

# alias (accents removed, lower case) -> canonical command
ALIASES = {
    "prendo": "take",
    "take": "take",
    "assegna": "assign",
    "assign": "assign",
    "priorita": "priority",
    "priority": "priority",
    "stato": "status",
    "status": "status",
    "nota": "note",
    "note": "note",
    "categoria": "category",
    "category": "category",
    "ente": "ente",
    "unisci": "merge",
    "merge": "merge",
}
# how the commands are written, for error messages
SYNTAX = [
    "#prendo / #take",
    "#assegna <email o nome> / #assign <email or name>",
    "#priorita alta|media|bassa / #priority high|medium|low",
    "#stato attesa|risolto|chiuso / #status waiting|resolved|closed",
    "#nota <testo> / #note <text>",
    "#categoria <categoria>/<sottocategoria> / #category <cat>/<subcat>",
    "#ente <nome dell'ente>",
    "#unisci <numero> / #merge <number>",
]
PRIORITIES = {
    "alta": "ALTA",
    "high": "ALTA",
    "media": "MEDIA",
    "medium": "MEDIA",
    "bassa": "BASSA",
    "low": "BASSA",
}
STATUSES = {
    "attesa": IN_ATTESA,
    "in attesa": IN_ATTESA,
    "in_attesa": IN_ATTESA,
    "waiting": IN_ATTESA,
    "risolto": RISOLTO,
    "resolved": RISOLTO,
    "chiuso": CHIUSO,
    "closed": CHIUSO,
}

# the values shown when one is wrong, Italian first
PRIORITY_WORDS = ("alta", "media", "bassa", "high", "medium", "low")
STATUS_WORDS = ("attesa", "risolto", "chiuso", "waiting", "resolved", "closed")

_COMMAND_LINE = re.compile(r"^#([^\W\d_]+)(?:\s+(.*))?$")
_SIGNATURE = re.compile(r"^(?:--|__+)\s*$")


def fold(word: str) -> str:
    """Lower case without accents: "Priorità" -> "priorita"."""
    decomposed = unicodedata.normalize("NFKD", word.strip().lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@dataclass(frozen=True)
class Command:
    name: str  # canonical (take, assign, priority, status, note, category, ente, merge)
    arg: str  # the value as written, stripped ("" when none)
    line: str  # the whole line, for messages


@dataclass(frozen=True)
class CommandError:
    line: str
    problem: str  # unknown_command, missing_value, bad_value, not_found, ...
    valid: tuple[str, ...] = ()


@dataclass
class OperatorText:
    """An operator's new text split into commands, an internal note and public text."""

    commands: list[Command] = field(default_factory=list)
    errors: list[CommandError] = field(default_factory=list)
    note: str | None = None  # text after #nota (None: no #nota)
    public: str = ""  # what the requester may read ("" for a commands-only reply)


def parse_operator_text(text: str) -> OperatorText:
    """Commands are the lines starting with '#' at the top, blank lines between them allowed.
    `#nota` takes the rest of its line and of the message as an internal note."""
    out = OperatorText()
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
            continue
        m = _COMMAND_LINE.match(line)
        if m is None:
            break
        name = ALIASES.get(fold(m.group(1)))
        arg = (m.group(2) or "").strip()
        if name is None:
            out.errors.append(CommandError(line, "unknown_command"))
        elif name == "note":
            rest = "\n".join([arg, *lines[i + 1 :]]).strip()
            out.note = rest
            out.commands.append(Command(name, rest, line))
            return out
        else:
            out.commands.append(Command(name, arg, line))
        i += 1
    out.public = _without_bare_signature("\n".join(lines[i:]).strip())
    return out


def _without_bare_signature(text: str) -> str:
    """A text that is only a signature ("--" and what follows) says nothing to relay."""
    for line in text.split("\n"):
        if not line.strip():
            continue
        return "" if _SIGNATURE.match(line.strip()) else text
    return ""


def is_status_request_line(text: str) -> bool:
    """A requester's reply whose first line is just `#stato` / `#status`."""
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.strip():
            return fold(line) in ("#stato", "#status")
    return False


__all__ = [
    "ALIASES",
    "PRIORITIES",
    "PRIORITY_WORDS",
    "STATUSES",
    "STATUS_WORDS",
    "SYNTAX",
    "Command",
    "CommandError",
    "OperatorText",
    "fold",
    "is_status_request_line",
    "parse_operator_text",
]
