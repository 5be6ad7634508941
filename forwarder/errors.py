"""The forwarder's errors: each names the thing it failed on and where.

ForwarderError
├── ConfigError        a setting is missing or malformed (names the variable, never its value)
├── UnsupportedEvent   the Lambda event has a shape no trigger recognises
├── InputError         an object or log batch could not be read or split (names object and position)
├── DeliveryError      events could not be delivered to the intake
├── StoreError         the failure store could not be written or read
├── HandOffError       the rest of an object could not be handed to the continuation queue
├── DeadlineReached    the invocation's time ran out before a piece of work could finish
└── IncompleteInvocation  the invocation ends with events not delivered, so AWS must retry it
"""

from __future__ import annotations


class ForwarderError(Exception):
    """Base class of every error the forwarder raises on purpose."""


class ConfigError(ForwarderError):
    """A setting is missing or invalid. Messages name the variable and never echo a secret."""


class UnsupportedEvent(ForwarderError):
    """The event matches no trigger shape; the message names the keys that were seen."""


class InputError(ForwarderError):
    """Bad input: corrupt compression, a truncated stream, an unparsable record.

    `origin` names the object (s3://bucket/key) or log batch (log group/stream);
    `position` says how far reading got (compressed byte offset, record index or line number).
    """

    def __init__(self, origin: str, position: str, reason: str) -> None:
        super().__init__(f"{origin}: {reason} (at {position})")
        self.origin = origin
        self.position = position
        self.reason = reason


class DeliveryError(ForwarderError):
    """A batch could not be delivered; `status` is the intake's HTTP status, None when none came."""

    def __init__(self, reason: str, status: int | None = None, answer: str = "") -> None:
        detail = f" (HTTP {status}: {answer[:500]})" if status is not None else ""
        super().__init__(f"{reason}{detail}")
        self.reason = reason
        self.status = status
        self.answer = answer


class StoreError(ForwarderError):
    """Failed events could not be kept (or a stored batch read back): those events count as failed."""


class HandOffError(ForwarderError):
    """The rest of an object could not be handed to the continuation queue: its work item fails."""


class DeadlineReached(ForwarderError):
    """Time ran out before a piece of work that cannot be handed over finished: not bad input.

    `origin` names what was being worked on; `position` how far it got.
    """

    def __init__(self, origin: str, position: str, reason: str) -> None:
        super().__init__(f"{origin}: {reason} (at {position})")
        self.origin = origin
        self.position = position
        self.reason = reason


class IncompleteInvocation(ForwarderError):
    """Some events were not delivered: raised so that AWS retries the invocation, never a silent success."""
