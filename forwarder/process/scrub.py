"""REDACT_IP, REDACT_EMAIL and DD_SCRUBBING_RULE: the Datadog Forwarder's patterns and placeholders,
applied to each event's content and never to the metadata the intake needs.

Rules run in the Datadog Forwarder's order (IP, then email, then the user's rule), each replacing
every match (`re.sub`). Text is scrubbed as it is. JSON (a CloudTrail record, or a message that is
a JSON document, such as an EKS audit event) is scrubbed one string value at a time, each changed
value written again as a JSON string and put back in place: the result is valid JSON whatever a
rule matches (a quote, a brace), and the rest of the record keeps its bytes. Keys, numbers, `true`,
`false` and `null` are left as they are.

An event no rule changes is passed on as read, and a block none of whose events change is the block
itself, so runs keep their fast path. Whether a rule can change a JSON document is first looked for
in its whole text (`_Rules.untouched`), which is far cheaper than visiting its strings one by one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import orjson

from forwarder.formats import Block
from forwarder.formats.logbatch import MessageRun
from forwarder.formats.run import RUN_FIRST_KEY, RecordRun
from forwarder.metrics import Tally
from forwarder.model import LogEvent, RawEvent
from forwarder.process import EventList
from forwarder.settings import Settings

IP = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
IP_PLACEHOLDER = "xxx.xxx.xxx.xxx"
EMAIL = re.compile(r"[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+")
EMAIL_PLACEHOLDER = "xxxxx@xxxxx.com"

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"(?P<key>[ \t\r\n]*:)?', re.DOTALL)
"""A JSON string, and the colon after it when it is a key. Scanned from a point outside any string
of a valid document, it finds exactly the document's strings."""
_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|.)", re.DOTALL)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SHORT_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_CONTEXT = {"AT", "ASSERT", "ASSERT_NOT", "ATOMIC_GROUP", "POSSESSIVE_REPEAT"}
"""What makes a pattern look beyond its match (anchors, word boundaries, lookarounds) or keep from
backtracking: for those, a match inside a string need not be one inside the whole text."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A pattern and what replaces each of its matches (a `re.sub` template)."""

    pattern: re.Pattern[str]
    replacement: str


def rules(settings: Settings) -> list[Rule]:
    """The scrubbing rules the settings turn on, in the order they run."""
    chosen = []
    if settings.redact_ip:
        chosen.append(Rule(IP, IP_PLACEHOLDER))
    if settings.redact_email:
        chosen.append(Rule(EMAIL, EMAIL_PLACEHOLDER))
    if settings.scrubbing_rule is not None:
        chosen.append(Rule(settings.scrubbing_rule, settings.scrubbing_rule_replacement))
    return chosen


class Scrubber:
    """Applies the rules to every event's content; counts the events they changed in `tally.scrubbed`."""

    def __init__(self, chosen: Sequence[Rule], tally: Tally) -> None:
        self._rules = _Rules(tuple(chosen))
        self._tally = tally

    def process(self, block: Block) -> tuple[Block | None, int]:
        if type(block) is RecordRun:
            scrubbed = self._record_run(block)
        elif type(block) is MessageRun:
            scrubbed = self._message_run(block)
        else:
            scrubbed = self._events(block)
        return (block if scrubbed is None else scrubbed), 0

    def _record_run(self, run: RecordRun) -> Block | None:
        """Each member is the record less `{"eventVersion"` and `}`: outside any string, so scrubbed as is."""
        changed: dict[int, bytes] = {}
        for index, member in enumerate(run.members):
            scrubbed = self._rules.json(member.decode())
            if scrubbed is not None:
                changed[index] = RUN_FIRST_KEY + scrubbed.encode() + b"}"
        if not changed:
            return None
        self._tally.scrubbed += len(changed)
        events = list(run.events())
        for index, record in changed.items():
            events[index] = msgspec.structs.replace(events[index], record=record)
        return EventList(events, run.last())

    def _message_run(self, run: MessageRun) -> Block | None:
        """The run with its messages scrubbed, still a run: same events, same ids, its fast path kept."""
        log_events: list[LogEvent] | None = None
        for index, event in enumerate(run.log_events):
            scrubbed = self._rules.message(event.message)
            if scrubbed is not None:
                log_events = list(run.log_events) if log_events is None else log_events
                log_events[index] = LogEvent(event.id, event.timestamp, scrubbed)
                self._tally.scrubbed += 1
        return None if log_events is None else MessageRun(run.position, tuple(log_events))

    def _events(self, block: Block) -> Block | None:
        events = list(block.events())
        changed = 0
        for index, event in enumerate(events):
            scrubbed = self._event(event)
            if scrubbed is not None:
                events[index] = scrubbed
                changed += 1
        if not changed:
            return None
        self._tally.scrubbed += changed
        if type(block) is RawEvent:
            return events[0]
        return EventList(events, block.last())

    def _event(self, event: RawEvent) -> RawEvent | None:
        if event.record is not None:
            record = self._rules.json(event.record.decode())
            return None if record is None else msgspec.structs.replace(event, record=record.encode())
        if event.message:
            message = self._rules.message(event.message)
            return None if message is None else msgspec.structs.replace(event, message=message)
        return None


class _Rules:
    """The rules over text, over JSON documents, and over messages that may be either."""

    def __init__(self, chosen: tuple[Rule, ...]) -> None:
        self._chosen = chosen
        self._patterns = tuple(rule.pattern for rule in chosen)
        self._searchable = all(context_free(rule.pattern) for rule in chosen)

    def text(self, text: str) -> str | None:
        """`text` with every rule applied in order, or None when none changed it."""
        scrubbed = text
        for rule in self._chosen:
            scrubbed = rule.pattern.sub(rule.replacement, scrubbed)
        return None if scrubbed == text else scrubbed

    def message(self, message: str) -> str | None:
        """A JSON document's strings scrubbed, or any other message scrubbed as text; None when unchanged."""
        if message.startswith(("{", "[")):
            if self.untouched(message):
                return None
            if _is_json(message):
                return self.strings(message)
        return self.text(message)

    def json(self, document: str) -> str | None:
        """A valid JSON document (or a part of one that starts outside any string) with its string
        values scrubbed, or None when no rule changed any."""
        return None if self.untouched(document) else self.strings(document)

    def untouched(self, document: str) -> bool:
        """Whether no rule can change a string of `document`: no rule matches anywhere in its text
        with its escapes decoded, in which every string value is a substring. That holds only for
        rules that look at nothing outside their match; for others, and for escaped surrogates,
        this says nothing and the strings are visited one by one."""
        if not self._searchable:
            return False
        if "\\" in document:
            if _SURROGATE_ESCAPE.search(document) is not None:
                return False
            document = _ESCAPE.sub(_unescape, document)
        return not any(pattern.search(document) is not None for pattern in self._patterns)

    def strings(self, document: str) -> str | None:
        """Each string value scrubbed and written again as a JSON string, in place."""
        pieces: list[str] = []
        done = 0
        for found in _STRING.finditer(document):
            if found.group("key") is not None:
                continue
            token = found.group()
            value = orjson.loads(token) if "\\" in token else token[1:-1]
            scrubbed = self.text(value)
            if scrubbed is not None:
                pieces += (document[done : found.start()], orjson.dumps(scrubbed).decode())
                done = found.end()
        if not pieces:
            return None
        pieces.append(document[done:])
        return "".join(pieces)


def context_free(pattern: re.Pattern[str]) -> bool:
    """Whether `pattern` matches at a place depends only on the characters it consumes there
    (no anchor, word boundary, lookaround, atomic group or possessive repeat). False when unsure."""
    try:
        from re import _parser  # type: ignore[attr-defined]  # the parser `re` itself uses

        parsed = _parser.parse(pattern.pattern, pattern.flags)
    except (ImportError, AttributeError, re.error):
        return False
    return not _uses_context(parsed)


def _uses_context(items: object) -> bool:
    for op, argument in items:  # type: ignore[attr-defined]
        if op.name in _CONTEXT:
            return True
        for part in argument if isinstance(argument, tuple | list) else ():
            if _is_subpattern(part) and _uses_context(part):
                return True
            if isinstance(part, list) and any(_is_subpattern(branch) and _uses_context(branch) for branch in part):
                return True
    return False


def _is_subpattern(value: object) -> bool:
    return type(value).__name__ == "SubPattern"


def _unescape(escape: re.Match[str]) -> str:
    text = escape.group()
    if text[1] == "u":
        return chr(int(text[2:], 16))
    return _SHORT_ESCAPES.get(text[1], text[1])


def _is_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True
