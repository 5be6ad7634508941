"""The output the settings ask for: Datadog or OCSF entries, to a Datadog intake or any HTTP intake.

A generic intake (FORWARDER_INTAKE_FORMAT) is DD_URL, with FORWARDER_INTAKE_HEADERS and, when a
secret is set (DD_API_KEY, DD_API_KEY_SECRET_ARN or DD_API_KEY_SSM_NAME), an auth header
(FORWARDER_INTAKE_AUTH). It takes a batch as:

- `json`: one JSON array per request; any 2xx answer is success.
- `ndjson`: one entry per line; any 2xx answer is success.
- `splunk-hec`: Splunk HEC's event endpoint, each entry inside HEC's envelope
  (`{"time", "host", "source", "sourcetype", "event"}`), one per line; success is HEC's own answer,
  `{"text":"Success","code":0}`.

Batching limits, retries, the deadline, the failure store and replay are the Datadog intake's: only
the framing, the headers, the success answer and where an entry carries its time differ.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from forwarder.errors import ConfigError
from forwarder.formats import Block
from forwarder.metrics import EntryTime, entry_time_ms, member_time
from forwarder.model import Container, Entry, Invoker, Source
from forwarder.outputs import Encoder, Output, datadog
from forwarder.outputs.batch import json_array, ndjson
from forwarder.outputs.http import HttpTransport, any_2xx
from forwarder.settings import IntakeAuth, IntakeFormat, OutputFormat, Settings

EncoderFactory = Callable[[Source, Container, Invoker], Encoder]
HEC_SOURCETYPE = "_json"
"""Splunk's built-in sourcetype for JSON events: fields are extracted at search time."""
_AUTH_SCHEMES = {IntakeAuth.BEARER: "Bearer", IntakeAuth.BASIC: "Basic", IntakeAuth.SPLUNK: "Splunk"}
hec_entry_time: EntryTime = member_time("time", ms_per_unit=1000)
"""HEC's envelope carries the entry's time as `time`, in epoch seconds."""


def output(settings: Settings, secret: str, **options: Any) -> Output:
    """The output for `settings`; `secret` is the resolved key ("" for an intake that needs none)
    and `options` (retry policy, clock) go to the transport, for tests."""
    make, watched = _encoders(settings)
    if settings.intake_format is IntakeFormat.DATADOG:  # OCSF too travels in a Datadog entry, with its `timestamp`
        return Output(make, watched, json_array, datadog.transport(settings, secret, **options))
    transport = intake_transport(settings, secret, **options)
    if settings.intake_format is IntakeFormat.SPLUNK_HEC:
        return Output(hec_encoders(make, settings), watched, ndjson, transport, hec_entry_time)
    entry_time = _ocsf().entry_time_ms if settings.output_format is OutputFormat.OCSF else entry_time_ms
    frame = json_array if settings.intake_format is IntakeFormat.JSON else ndjson
    return Output(make, watched, frame, transport, entry_time)


def _encoders(settings: Settings) -> tuple[Callable[..., Encoder], frozenset[str]]:
    """A maker of encoders taking (source, container, invoker[, settings]), and what they watch."""
    if settings.output_format is OutputFormat.OCSF:
        datadog_intake = settings.intake_format is IntakeFormat.DATADOG
        encoder = _ocsf().OcsfEncoder

        def to_ocsf(source: Source, container: Container, invoker: Invoker, own: Settings = settings) -> Encoder:
            return encoder(source, container, invoker, own, datadog=datadog_intake)

        return to_ocsf, encoder.watched

    def plain(source: Source, container: Container, invoker: Invoker, own: Settings = settings) -> Encoder:
        return datadog.DatadogEncoder(source, container, invoker, own)

    return plain, datadog.DatadogEncoder.watched


def _ocsf() -> Any:
    """The OCSF output's module, imported only when the settings choose it (a cold start without it is
    about 2 ms shorter)."""
    from forwarder.outputs import ocsf

    return ocsf


def intake_transport(settings: Settings, secret: str, **options: Any) -> HttpTransport:
    """The transport to a generic intake: its headers, its auth header, its success answer. With
    auth, `secret` is set: `Settings.resolve_intake_secret` raised otherwise."""
    headers = dict(settings.intake_headers)
    kind = settings.intake_auth_kind
    carried = secret
    if kind is not IntakeAuth.NONE:
        if kind is IntakeAuth.BASIC:
            if ":" not in secret:
                raise ConfigError("FORWARDER_INTAKE_AUTH=basic needs the secret as user:password")
            carried = base64.b64encode(secret.encode()).decode()
        name = settings.intake_auth_header if kind is IntakeAuth.HEADER else "Authorization"
        headers[name] = f"{_AUTH_SCHEMES[kind]} {carried}" if kind in _AUTH_SCHEMES else carried
    accepts = hec_accepts if settings.intake_format is IntakeFormat.SPLUNK_HEC else any_2xx
    return HttpTransport(settings, settings.intake_url, headers, secret=carried, accepts=accepts, **options)


def hec_accepts(status: int, headers: Mapping[str, str], text: str) -> bool:
    """HEC's success answer: 200 and `{"text":"Success","code":0}`."""
    if status != 200:
        return False
    try:
        answer = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(answer, dict) and answer.get("code") == 0


def hec_encoders(make: Callable[..., Encoder], settings: Settings) -> EncoderFactory:
    """Encoders whose entries are wrapped in HEC's envelope; the inner entry's limit leaves room for it."""

    def wrapped(source: Source, container: Container, invoker: Invoker) -> Encoder:
        lead = orjson.dumps({"host": source.host, "source": source.name, "sourcetype": HEC_SOURCETYPE})[1:-1]
        room = len(lead) + 64  # the braces, `"time":` and its value, `"event":`
        inner = dataclasses.replace(settings, entry_max_bytes=max(1024, settings.entry_max_bytes - room))
        return HecEncoder(make(source, container, invoker, inner), lead)

    return wrapped


class HecEncoder:
    """Wraps another encoder's entries in HEC's envelope. `time` (epoch seconds) is the entry's own
    time (`timestamp` of a Datadog entry, `time` of an OCSF object): the one place an entry is
    parsed again, as HEC wants its time outside the event."""

    def __init__(self, inner: Encoder, lead: bytes) -> None:
        self._inner = inner
        self.watched = inner.watched
        self._lead = lead

    @property
    def unmappable(self) -> int:
        return self._inner.unmappable

    def entries(self, block: Block) -> list[Entry]:
        return [self._wrapped(entry) for entry in self._inner.entries(block)]

    def _wrapped(self, entry: Entry) -> Entry:
        try:
            fields = orjson.loads(entry.body)
        except orjson.JSONDecodeError:  # deeper than orjson reads: HEC then stamps it on arrival
            fields = None
        ms = fields.get("timestamp", fields.get("time")) if isinstance(fields, dict) else None
        when = b'"time":%.3f,' % (ms / 1000) if type(ms) is int else b""
        return Entry(b"".join((b"{", when, self._lead, b',"event":', entry.body, b"}")), entry.truncated)
