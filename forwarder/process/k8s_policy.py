"""The Kubernetes audit policy (`audit.k8s.io/v1` `Policy`), applied to audit events already written.

EKS fixes its API server's audit policy, so the noise users pay a SIEM for (health checks, controller
reads, leases) cannot be turned down at the source. This processor applies a policy of the user's
with the API server's own semantics (kubernetes/apiserver `pkg/audit/policy/checker.go`): the rules
in order, the first that matches decides the level, omitted stages and managed fields. An event
already written can only be reduced: a rule never raises it above the level it arrived at, and its
`level` field says the level it has once the policy is applied.

Only the fields a rule looks at are decoded (msgspec, the objects kept as raw bytes), so an event
the policy leaves as it is keeps its bytes and its reader's fast path; an event it changes is
decoded in full and re-serialised.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from forwarder.formats import Block
from forwarder.model import RawEvent, Source
from forwarder.process import EventList

if TYPE_CHECKING:
    from forwarder.settings import Settings

KUBERNETES_AUDIT = "kubernetes.audit"
"""The source the policy applies to: EKS audit through CloudWatch Logs, and audit files from S3."""
STAGES = frozenset({"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"})


class Level(enum.IntEnum):
    """Audit levels in the API server's order: each records everything the one below does."""

    NONE = 0
    METADATA = 1
    REQUEST = 2
    REQUEST_RESPONSE = 3

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Level.NONE: "None",
    Level.METADATA: "Metadata",
    Level.REQUEST: "Request",
    Level.REQUEST_RESPONSE: "RequestResponse",
}
LEVELS = {label: level for level, label in _LABELS.items()}


class Request(msgspec.Struct, frozen=True, gc=False):
    """What a rule looks at, taken from an event: the checker's authorizer attributes (hashable, so
    decisions are kept per distinct request: audit streams repeat the same few over and over)."""

    user: str | None
    """`user.username`; None when the event has no user (then no rule with users or groups matches)."""
    groups: tuple[str, ...]
    verb: str
    api_group: str
    resource: str
    """Empty for a non-resource request (no `objectRef`, or one without a resource)."""
    subresource: str
    namespace: str
    name: str
    path: str
    """`requestURI` without its query."""


@dataclass(frozen=True, slots=True)
class GroupResources:
    """One `resources` entry of a rule: an API group (`*` for all), its resources, their names."""

    group: str
    resources: tuple[str, ...]
    names: frozenset[str]

    def matches(self, request: Request, combined: str) -> bool:
        if self.group != request.api_group and self.group != "*":
            return False
        if not self.resources:
            return True
        if self.names and request.name not in self.names:
            return False
        for resource in self.resources:
            if resource in (combined, "*"):
                return True
            if request.subresource and resource == "*/" + request.subresource:
                return True
            if resource.endswith("/*") and resource[:-2] == request.resource:
                return True
        return False


@dataclass(frozen=True, slots=True)
class Rule:
    """One policy rule; `omit_stages` already holds the policy's too, `omit_managed_fields` its default."""

    level: Level
    users: frozenset[str]
    user_groups: frozenset[str]
    verbs: frozenset[str]
    resources: tuple[GroupResources, ...]
    namespaces: frozenset[str]
    urls: tuple[str, ...]
    omit_stages: frozenset[str]
    omit_managed_fields: bool

    def matches(self, request: Request) -> bool:
        if self.users and (request.user is None or request.user not in self.users):
            return False
        if self.user_groups and (request.user is None or self.user_groups.isdisjoint(request.groups)):
            return False
        if self.verbs and request.verb not in self.verbs:
            return False
        if self.namespaces or self.resources:
            return self._matches_resource(request)
        if self.urls:
            return not request.resource and any(_url_matches(url, request.path) for url in self.urls)
        return True

    def _matches_resource(self, request: Request) -> bool:
        if not request.resource:
            return False
        if self.namespaces and request.namespace not in self.namespaces:
            return False
        if not self.resources:
            return True
        combined = f"{request.resource}/{request.subresource}" if request.subresource else request.resource
        return any(group.matches(request, combined) for group in self.resources)


def _url_matches(spec: str, path: str) -> bool:
    if spec in ("*", path):
        return True
    return spec.endswith("*") and path.startswith(spec.rstrip("*"))


class _User(msgspec.Struct, gc=False):
    username: str = ""
    groups: list[str] = []


class _ObjectRef(msgspec.Struct, gc=False):
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    apiGroup: str = ""


class _Head(msgspec.Struct, gc=False):
    """The fields a decision needs, typed; the objects stay raw bytes (empty when absent)."""

    level: str = ""
    stage: str = ""
    verb: str = ""
    requestURI: str = ""
    user: _User | None = None
    objectRef: _ObjectRef | None = None
    requestObject: msgspec.Raw = msgspec.Raw()
    responseObject: msgspec.Raw = msgspec.Raw()


class _View(msgspec.Struct, gc=False):
    """What applying the policy needs of one event."""

    request: Request
    level: str
    stage: str
    has_request_object: bool
    has_response_object: bool


_HEAD = msgspec.json.Decoder(_Head)
_EVENT = msgspec.json.Decoder()
DECISIONS_KEPT = 4096
"""Distinct requests whose decisions are kept; past this the cache starts again (a stream of all
distinct names costs a rule walk each, never memory)."""


def _view(text: str) -> _View | None:
    """The event's view; None for text that is not a JSON object (not an audit event).

    An event with an odd type where a string or list is expected (a number for a name, null for a
    namespace) is read loosely, each such value taken as absent, rather than left unfiltered."""
    try:
        head = _HEAD.decode(text)
    except msgspec.ValidationError:
        event = _EVENT.decode(text)
        return _loose_view(event) if isinstance(event, dict) else None
    except msgspec.DecodeError:
        return None
    user, ref = head.user, head.objectRef or _NO_REF
    request = Request(
        None if user is None else user.username,
        () if user is None else tuple(user.groups),
        head.verb,
        ref.apiGroup,
        ref.resource,
        ref.subresource,
        ref.namespace,
        ref.name,
        head.requestURI.partition("?")[0],
    )
    return _View(request, head.level, head.stage, len(head.requestObject) > 0, len(head.responseObject) > 0)


_NO_REF = _ObjectRef()


def _loose_view(event: dict[str, Any]) -> _View:
    user = event.get("user") if isinstance(event.get("user"), dict) else None
    groups = user.get("groups") if user is not None else None
    found = event.get("objectRef")
    ref: dict[str, Any] = found if isinstance(found, dict) else {}
    request = Request(
        None if user is None else _text(user.get("username")),
        tuple(group for group in groups if type(group) is str) if isinstance(groups, list) else (),
        _text(event.get("verb")),
        _text(ref.get("apiGroup")),
        _text(ref.get("resource")),
        _text(ref.get("subresource")),
        _text(ref.get("namespace")),
        _text(ref.get("name")),
        _text(event.get("requestURI")).partition("?")[0],
    )
    level, stage = _text(event.get("level")), _text(event.get("stage"))
    return _View(request, level, stage, "requestObject" in event, "responseObject" in event)


def _text(value: Any) -> str:
    return value if type(value) is str else ""


Decision = tuple[Level, frozenset[str], bool]
"""A rule's level, the stages it omits and whether it omits managed fields."""


@dataclass(frozen=True)
class Policy:
    """A checked policy (see `k8s_policy_document.parse_policy`) and the decisions it has made."""

    rules: tuple[Rule, ...]
    omit_stages: frozenset[str]
    omit_managed_fields: bool
    _decisions: dict[Request, Decision] = field(default_factory=dict, compare=False, repr=False)

    def decide(self, request: Request) -> Decision:
        """The first matching rule's decision; level None when no rule matches."""
        decision = self._decisions.get(request)
        if decision is None:
            decision = next(
                (
                    (rule.level, rule.omit_stages, rule.omit_managed_fields)
                    for rule in self.rules
                    if rule.matches(request)
                ),
                (Level.NONE, self.omit_stages, self.omit_managed_fields),
            )
            if len(self._decisions) >= DECISIONS_KEPT:
                self._decisions.clear()
            self._decisions[request] = decision
        return decision

    def apply(self, text: str) -> str | None:
        """The event as the policy leaves it: `text` itself when unchanged, None when filtered.

        Text that is not a JSON object is not an audit event: it goes on unchanged.
        """
        view = _view(text)
        if view is None:
            return text
        level, omit_stages, omit_managed_fields = self.decide(view.request)
        arrived = LEVELS.get(view.level)
        target = level if arrived is None else min(level, arrived)
        if target is Level.NONE or view.stage in omit_stages:
            return None
        relabel = target < (Level.REQUEST_RESPONSE if arrived is None else arrived)
        strips = (target < Level.REQUEST and view.has_request_object) or (
            target < Level.REQUEST_RESPONSE and view.has_response_object
        )
        managed = omit_managed_fields and "managedFields" in text
        if not (relabel or strips or managed):
            return text
        if not (strips or managed):
            relabelled = _relabelled(text, view.level, target)
            if relabelled is not None:
                return relabelled
        event = _EVENT.decode(text)
        changed = _reduce(event, target, relabel, managed and view.request.verb != "patch", managed)
        return msgspec.json.encode(event).decode() if changed else text


_LEVEL_KEY = '"level"'


def _relabelled(text: str, arrived: str, target: Level) -> str | None:
    """`text` with only its level's value replaced, its other bytes kept; None when that is not safe.

    Safe when `"level"` occurs once in the text, as a key written `"level":"<arrived>"` with no
    bracket opened before it: then it is the event's own key, not a nested one nor a duplicate,
    and its value is the one the policy read. Anything else (spaces, escapes, a nested `level`, a
    string that says "level") takes the full decode and encode.
    """
    at = text.find(_LEVEL_KEY)
    if at < 0 or text.find(_LEVEL_KEY, at + 1) >= 0 or not text.startswith("{"):
        return None
    if "{" in text[1:at] or "[" in text[1:at]:
        return None
    value = f'{_LEVEL_KEY}:"{arrived}"'
    if not text.startswith(value, at):
        return None
    return f'{text[:at]}{_LEVEL_KEY}:"{target.label}"{text[at + len(value) :]}'


def _reduce(event: dict[str, Any], target: Level, relabel: bool, request_fields: bool, response_fields: bool) -> bool:
    """Reduce a decoded event to `target` in place; whether anything changed."""
    changed = False
    if relabel:
        event["level"] = target.label
        changed = True
    for name, lowest in (("requestObject", Level.REQUEST), ("responseObject", Level.REQUEST_RESPONSE)):
        if target < lowest and name in event:
            del event[name]
            changed = True
    if request_fields:
        changed = _drop_managed_fields(event.get("requestObject")) or changed
    if response_fields:
        changed = _drop_managed_fields(event.get("responseObject")) or changed
    return changed


def _drop_managed_fields(value: Any) -> bool:
    """Remove `metadata.managedFields` from an object, or from each item of a list object."""
    items = value.get("items") if isinstance(value, dict) else None
    targets = [value, *items] if isinstance(items, list) else [value]
    dropped = False
    for target in targets:
        metadata = target.get("metadata") if isinstance(target, dict) else None
        if isinstance(metadata, dict) and "managedFields" in metadata:
            del metadata["managedFields"]
            dropped = True
    return dropped


class K8sAuditPolicy:
    """The processor: applies the policy to Kubernetes audit events and leaves every other source alone."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def process(self, block: Block, source: Source) -> tuple[Block | None, int]:
        """The block itself when no event changes; else the kept events, reduced ones replaced.

        Audit events are text (CloudWatch messages, NDJSON lines); an event without a message (a
        checkpoint marker) goes on as it is."""
        if source.name != KUBERNETES_AUDIT:
            return block, 0
        events = list(block.events())
        kept: list[RawEvent] | None = None
        for index, event in enumerate(events):
            text = event.message
            result = text if text is None else self.policy.apply(text)
            if result is text:
                if kept is not None:
                    kept.append(event)
                continue
            if kept is None:
                kept = events[:index]
            if result is not None:
                kept.append(msgspec.structs.replace(event, message=result))
        if kept is None:
            return block, 0
        return (EventList(kept, block.last()) if kept else None), len(events) - len(kept)


def from_settings(settings: Settings) -> list[K8sAuditPolicy]:
    """The policy processor when FORWARDER_K8S_AUDIT_POLICY is set (fetched and compiled once per container)."""
    if not settings.k8s_audit_policy:
        return []
    from forwarder.process.k8s_policy_document import compiled  # it builds this module's Rules

    return [K8sAuditPolicy(compiled(settings.resolve_k8s_audit_policy(), settings.k8s_audit_policy_origin))]
