"""The bench's processing tables on small inputs: the rules' and the audit policy's rows run, count
what went in and out, and show what the settings do (no figure of time is asserted)."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from bench import FIXTURES
from bench.auditmix import MIX
from bench.inputs import cloudtrail_input, eks_audit_mix_input
from bench.processing import Processed, measure_processing
from bench.report import render
from forwarder.process.k8s_policy_document import parse_policy

SEED_POLICY = (FIXTURES / "k8s-audit" / "policies" / "seed-example_audit-policy.yaml").read_text()
SETTINGS = ("plain", "rules that change nothing", "all rules")
DROPPED_BY_SEED = ("/healthz", "/livez", "/readyz", "/metrics", "/version")


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Processed], list[Processed]]:
    directory = tmp_path_factory.mktemp("bench")
    return measure_processing(cloudtrail_input(0.3, directory), eks_audit_mix_input(0.3, directory), repeat=1)


def rows_by(rows: list[Processed]) -> dict[tuple[str, str], Processed]:
    return {(row.input.split()[0], row.setting): row for row in rows}


def test_every_row_reads_every_event_and_sends_no_more(measured: tuple[list[Processed], list[Processed]]) -> None:
    rules, policies = measured
    assert len(rules) == 6 and len(policies) == 3
    for row in rules + policies:
        assert row.events_in > 200
        assert 0 < row.events_out <= row.events_in
        assert row.bytes_out > 0 and row.cpu_seconds > 0
        assert 0 <= row.processors_cpu_seconds <= row.cpu_seconds


def test_rules_that_change_nothing_send_what_the_plain_run_sends(
    measured: tuple[list[Processed], list[Processed]],
) -> None:
    rows = rows_by(measured[0])
    for kind in ("cloudtrail", "eks-audit-mix"):
        plain, unchanged, everything = (rows[kind, setting] for setting in SETTINGS)
        assert plain.processors_cpu_seconds == 0
        assert (unchanged.events_out, unchanged.bytes_out) == (plain.events_out, plain.bytes_out)
        assert everything.events_out < plain.events_out  # the exclude pattern drops the noisy events
        assert everything.bytes_out != plain.bytes_out


def test_the_seed_policy_drops_events_and_bytes(measured: tuple[list[Processed], list[Processed]]) -> None:
    rows = rows_by(measured[1])
    none, seed = rows["eks-audit-mix", "no policy"], rows["eks-audit-mix", "seed example policy"]
    plain = rows_by(measured[0])["eks-audit-mix", "plain"]
    assert (none.events_out, none.bytes_out) == (plain.events_out, plain.bytes_out) == (none.events_in, none.bytes_out)
    assert seed.events_out < none.events_out
    assert seed.bytes_out < none.bytes_out
    assert rows["eks-audit-mix", "Kubernetes docs' example policy"].events_out < none.events_out


def test_the_tables_show_every_row(measured: tuple[list[Processed], list[Processed]]) -> None:
    rules, policies = measured
    table = render([], 0.0, ("`../baseline` at abc1234", 0.0), (rules, policies))
    assert "the current code only, not the baseline" in table
    for row in rules + policies:
        assert f"| {row.input} | {row.setting} | {row.events_in:,} | {row.events_out:,} |" in table


def test_the_audit_mix_makes_every_kind_it_names_and_the_seed_policy_sees_its_noise() -> None:
    rng = random.Random(7)
    policy = parse_policy(SEED_POLICY)
    for name, share, make in MIX:
        event = make(rng)
        assert share > 0 and event["kind"] == "Event" and event["verb"] and event["user"]["username"], name
        text = orjson.dumps({**event, "auditID": "a", "requestReceivedTimestamp": "t", "stageTimestamp": "t"}).decode()
        dropped = policy.apply(text) is None
        assert dropped == event["requestURI"].startswith(DROPPED_BY_SEED), name


def test_inputs_are_written_where_asked(tmp_path: Path) -> None:
    made = eks_audit_mix_input(0.05, tmp_path)
    assert Path(made.path).parent == tmp_path and made.kind == "eks-audit-mix" and made.events > 0
    assert eks_audit_mix_input(0.05, tmp_path) == made  # the second time from the cache
