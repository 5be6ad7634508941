"""The Kubernetes audit policy: the API server's matching, levels, stages and managed fields, on real events."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forwarder.errors import ConfigError
from forwarder.formats.logbatch import MessageRun
from forwarder.model import Gap, LogEvent, RawEvent, Source
from forwarder.process import EventList, apply, k8s_policy
from forwarder.process.k8s_policy import LEVELS, K8sAuditPolicy, Policy
from forwarder.process.k8s_policy_document import parse_policy
from forwarder.settings import Settings as ForwarderSettings

FIXTURES = Path(__file__).parent.parent / "fixtures" / "k8s-audit"
DOCS_POLICY = (FIXTURES / "policies" / "kubernetes-docs_audit-policy.yaml").read_text()
SEED_POLICY = (FIXTURES / "policies" / "seed-example_audit-policy.yaml").read_text()
AUDIT = Source("kubernetes.audit", "kubernetes.audit", "/aws/eks/prod/cluster")


def lines(name: str) -> list[str]:
    return [line for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def falco(name: str) -> list[str]:
    return [line for line in lines(f"falco/{name}") if line.startswith('{"')]


def policy(*rules: dict[str, Any], **top: Any) -> Policy:
    return parse_policy(
        orjson.dumps({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": rules, **top}).decode()
    )


def event(**fields: Any) -> str:
    base: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "stage": "ResponseComplete",
        "verb": "get",
        "requestURI": "/api/v1/namespaces/default/pods/web",
        "user": {"username": "alice", "groups": ["devs", "system:authenticated"]},
        "objectRef": {"resource": "pods", "namespace": "default", "name": "web", "apiVersion": "v1"},
    }
    return orjson.dumps({**base, **fields}).decode()


def kept(rule: dict[str, Any], text: str) -> bool:
    """Whether `rule` (at Metadata, before a catch-all None) matches the event."""
    return policy({"level": "Metadata", **rule}).apply(text) is not None


def ref(resource: str, subresource: str = "", group: str = "", namespace: str = "default", name: str = "") -> str:
    found = {"resource": resource, "namespace": namespace, "name": name, "apiGroup": group, "subresource": subresource}
    return event(objectRef={key: value for key, value in found.items() if value})


@pytest.mark.parametrize(
    ("rule", "text", "matches"),
    [
        ({}, event(), True),
        ({"users": ["alice"]}, event(), True),
        ({"users": ["bob"]}, event(), False),
        ({"users": ["alice"]}, event(user=None), False),
        ({"userGroups": ["devs"]}, event(), True),
        ({"userGroups": ["ops"]}, event(), False),
        ({"verbs": ["get", "list"]}, event(), True),
        ({"verbs": ["watch"]}, event(), False),
        ({"resources": [{"group": "", "resources": ["pods"]}]}, ref("pods"), True),
        ({"resources": [{"group": "", "resources": ["pods"]}]}, ref("pods", "log"), False),
        ({"resources": [{"group": "", "resources": ["pods/log"]}]}, ref("pods", "log"), True),
        ({"resources": [{"group": "", "resources": ["pods/log"]}]}, ref("pods", "exec"), False),
        ({"resources": [{"group": "", "resources": ["pods/*"]}]}, ref("pods", "exec"), True),
        ({"resources": [{"group": "", "resources": ["pods/*"]}]}, ref("pods"), True),  # as checker.go: resource/*
        ({"resources": [{"group": "", "resources": ["pods/*"]}]}, ref("nodes", "status"), False),
        ({"resources": [{"group": "apps", "resources": ["*/scale"]}]}, ref("deployments", "scale", "apps"), True),
        ({"resources": [{"group": "apps", "resources": ["*/scale"]}]}, ref("deployments", "", "apps"), False),
        ({"resources": [{"group": "", "resources": ["*"]}]}, ref("pods", "log"), True),
        ({"resources": [{"group": ""}]}, ref("secrets"), True),
        ({"resources": [{"group": ""}]}, ref("deployments", group="apps"), False),
        ({"resources": [{"group": "*", "resources": ["deployments"]}]}, ref("deployments", group="apps"), True),
        ({"resources": [{"group": "", "resources": ["deployments"]}]}, ref("deployments", group="apps"), False),
        (
            {"resources": [{"resources": ["configmaps"], "resourceNames": ["leader"]}]},
            ref("configmaps", name="leader"),
            True,
        ),
        ({"resources": [{"resources": ["configmaps"], "resourceNames": ["leader"]}]}, ref("configmaps"), False),
        ({"namespaces": ["kube-system"]}, ref("configmaps", namespace="kube-system"), True),
        ({"namespaces": ["kube-system"]}, ref("configmaps"), False),
        ({"namespaces": [""]}, ref("nodes", namespace=""), True),
        ({"namespaces": ["kube-system"]}, event(objectRef=None, requestURI="/healthz"), False),
        ({"nonResourceURLs": ["/healthz*"]}, event(objectRef=None, requestURI="/healthz/etcd?verbose=1"), True),
        ({"nonResourceURLs": ["/healthz*"]}, event(objectRef=None, requestURI="/healthzfoo"), True),
        ({"nonResourceURLs": ["/api*"]}, event(objectRef=None, requestURI="/apis"), True),
        ({"nonResourceURLs": ["/version"]}, event(objectRef=None, requestURI="/version?timeout=32s"), True),
        ({"nonResourceURLs": ["/version"]}, event(objectRef=None, requestURI="/versions"), False),
        ({"nonResourceURLs": ["*"]}, event(objectRef=None, requestURI="/anything"), True),
        ({"nonResourceURLs": ["/api*"]}, ref("pods"), False),
    ],
)
def test_a_rule_matches_as_the_api_server_checker_does(rule: dict[str, Any], text: str, matches: bool) -> None:
    assert kept(rule, text) is matches


def test_the_first_matching_rule_decides_and_no_match_means_none() -> None:
    rules = policy({"level": "None", "users": ["alice"]}, {"level": "Metadata"})
    assert rules.apply(event()) is None
    assert rules.apply(event(user={"username": "bob"})) is not None
    assert policy({"level": "Metadata", "users": ["carol"]}).apply(event()) is None


@pytest.mark.parametrize(
    ("arrived", "rule", "level", "request_kept", "response_kept"),
    [
        ("RequestResponse", "Metadata", "Metadata", False, False),
        ("RequestResponse", "Request", "Request", True, False),
        ("Request", "Metadata", "Metadata", False, False),
        ("Request", "RequestResponse", "Request", True, False),
        ("Metadata", "RequestResponse", "Metadata", False, False),
    ],
)
def test_a_level_reduces_the_event_and_never_raises_it(
    arrived: str, rule: str, level: str, request_kept: bool, response_kept: bool
) -> None:
    objects = {"requestObject": {"kind": "Pod"}} if arrived != "Metadata" else {}
    if arrived == "RequestResponse":
        objects["responseObject"] = {"kind": "Pod", "status": {}}
    applied = policy({"level": rule}).apply(event(level=arrived, **objects))

    assert applied is not None
    result = orjson.loads(applied)
    assert result["level"] == level
    assert ("requestObject" in result) is request_kept and ("responseObject" in result) is response_kept


def test_an_event_the_policy_leaves_alone_keeps_its_bytes() -> None:
    text = event(requestObject={"kind": "Pod"}, responseObject={"kind": "Pod"})
    assert policy({"level": "RequestResponse"}).apply(text) is text
    metadata = event(level="Metadata")
    assert policy({"level": "RequestResponse"}).apply(metadata) is metadata
    assert policy({"level": "Metadata"}).apply(metadata) is metadata


def test_a_reduced_event_keeps_every_other_field_in_order() -> None:
    text = event(requestObject={"kind": "Pod"}, annotations={"a": "b"})
    applied = policy({"level": "Metadata"}).apply(text)

    assert applied is not None
    expected = {key: value for key, value in orjson.loads(text).items() if key != "requestObject"}
    assert list(orjson.loads(applied).items()) == list({**expected, "level": "Metadata"}.items())


def test_omitted_stages_are_the_policys_and_the_rules_together() -> None:
    rules = policy(
        {"level": "Metadata", "users": ["alice"], "omitStages": ["ResponseStarted"]},
        {"level": "Metadata"},
        omitStages=["RequestReceived"],
    )
    assert rules.apply(event(stage="RequestReceived")) is None
    assert rules.apply(event(stage="ResponseStarted")) is None
    assert rules.apply(event(stage="ResponseComplete")) is not None
    assert rules.apply(event(stage="ResponseStarted", user={"username": "bob"})) is not None


def managed(value: dict[str, Any]) -> dict[str, Any]:
    return {**value, "metadata": {"name": "web", "managedFields": [{"manager": "kubectl"}]}}


def test_managed_fields_are_omitted_from_objects_and_list_items_by_rule_or_policy() -> None:
    pod = managed({"kind": "Pod"})
    pods = {"kind": "PodList", "metadata": {}, "items": [managed({"kind": "Pod"}), {"kind": "Pod"}]}
    text = event(requestObject=pod, responseObject=pods)

    applied = policy({"level": "RequestResponse", "omitManagedFields": True}).apply(text)

    assert applied is not None
    result = orjson.loads(applied)
    assert result["requestObject"]["metadata"] == {"name": "web"}
    assert result["responseObject"]["items"][0]["metadata"] == {"name": "web"}
    assert policy({"level": "RequestResponse"}, omitManagedFields=True).apply(text) == applied
    assert policy({"level": "RequestResponse", "omitManagedFields": False}, omitManagedFields=True).apply(text) is text


def test_a_patch_body_is_logged_as_sent_even_without_managed_fields() -> None:
    """The API server strips managedFields from objects, not from a patch document."""
    text = event(verb="patch", requestObject=managed({}), responseObject=managed({"kind": "Pod"}))
    applied = policy({"level": "RequestResponse"}, omitManagedFields=True).apply(text)

    assert applied is not None
    result = orjson.loads(applied)
    assert "managedFields" in result["requestObject"]["metadata"]
    assert "managedFields" not in result["responseObject"]["metadata"]


def test_odd_field_types_are_read_as_absent_not_let_through() -> None:
    text = event(objectRef={"resource": "pods", "namespace": None, "name": 7}, requestObject={"spec": {}})
    applied = policy({"level": "Metadata", "resources": [{"resources": ["pods"]}]}).apply(text)

    assert applied is not None and "requestObject" not in orjson.loads(applied)
    assert policy({"level": "None", "users": ["alice"]}, {"level": "Metadata"}).apply(event(user="alice")) is not None


@pytest.mark.parametrize("text", ["not json at all", "[1, 2]", '{"kind": "Event"', ""])
def test_text_that_is_not_an_audit_event_goes_on_unchanged(text: str) -> None:
    assert policy({"level": "Metadata"}).apply(text) is text


def test_the_kubernetes_documentation_policy_works_as_written_on_real_events() -> None:
    docs = parse_policy(DOCS_POLICY)
    pod_create = falco("create_nginx_pod_privileged.json")[0]
    configmap_kube_system = event(
        level="RequestResponse", verb="update", objectRef={"resource": "configmaps", "namespace": "kube-system"},
        requestObject={"data": {}}, responseObject={"data": {}},
    )  # fmt: skip
    original = lines("audit2rbac_demo_original-2017.log")

    assert docs.apply(pod_create) is pod_create  # pods at RequestResponse: as written
    assert orjson.loads(docs.apply(configmap_kube_system) or "{}")["level"] == "Request"
    assert [docs.apply(line) for line in original if '"stage":"RequestReceived"' in line] == [None] * 320
    complete = [orjson.loads(line) for line in original if '"stage":"ResponseComplete"' in line]
    applied = [docs.apply(orjson.dumps(item).decode()) for item in complete]
    discovery = [item["requestURI"] for item, after in zip(complete, applied, strict=True) if after is None]
    assert len(discovery) == 23 and all(uri.startswith("/api") for uri in discovery)  # /api* by system:authenticated
    # every resource request arrived at Metadata and stays there: a RequestResponse rule (pods) never raises it
    assert {orjson.loads(after)["level"] for after in applied if after is not None} == {"Metadata"}


def test_the_docs_policys_secrets_rule_keeps_secrets_at_metadata() -> None:
    docs = parse_policy(DOCS_POLICY)
    for line in falco("create_configmap_sensitive_values.json") + falco("create_secret.json"):
        applied = docs.apply(line)
        assert applied is not None
        result = orjson.loads(applied)
        assert "requestObject" not in result and "responseObject" not in result
        assert result["level"] == "Metadata"


def test_the_seed_example_policy_drops_noise_and_keeps_tokens_out() -> None:
    seed = parse_policy(SEED_POLICY)
    applied = [seed.apply(line) for line in lines("written_eks-noise-and-secrets.jsonl")]

    assert applied[:4] == [None] * 4  # /healthz, /livez/etcd, /metrics, /version
    tokenreview, pod, lease, secret_received = (orjson.loads(text) if text else None for text in applied[4:])
    assert tokenreview is not None and tokenreview["level"] == "Metadata"
    assert "NOT-A-REAL-TOKEN" not in (applied[4] or "")
    assert pod is not None and pod["level"] == "RequestResponse"
    assert "managedFields" not in pod["requestObject"]["metadata"] and pod["responseObject"]["status"]
    assert lease is not None and lease["level"] == "Metadata" and "requestObject" not in lease
    assert secret_received is None  # RequestReceived omitted


def test_the_readme_shows_the_seed_example_policy_as_tested() -> None:
    readme = (Path(__file__).parent.parent.parent / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
    assert SEED_POLICY in blocks


def test_the_seed_policy_on_every_real_fixture_only_reduces() -> None:
    seed = parse_policy(SEED_POLICY)
    every = [line for path in sorted((FIXTURES / "falco").glob("*.json")) for line in falco(path.name)]
    every += lines("audit2rbac_demo.log") + lines("panther_eks-audit_normalized.jsonl")
    outcomes: Counter[str] = Counter()
    for line in every:
        applied = seed.apply(line)
        outcomes["filtered" if applied is None else "same" if applied is line else "reduced"] += 1
        if applied not in (None, line):
            before, after = orjson.loads(line), orjson.loads(applied or "")
            assert set(after) <= set(before) | {"level"}
    assert outcomes["filtered"] and outcomes["same"] and outcomes["reduced"]


BAD_POLICIES = [
    ({"level": "Verbose"}, "rules[0].level: must be one of None, Metadata, Request, RequestResponse, got 'Verbose'"),
    ({}, "rules[0].level: must be one of"),
    ({"level": "None", "verb": ["get"]}, "rules[0]: unknown field 'verb'"),
    ({"level": "None", "verbs": "get"}, "rules[0].verbs: must be a list of strings"),
    ({"level": "None", "resources": [{"group": "apps/v1"}]}, "rules[0].resources[0].group: must be an API group name"),
    ({"level": "None", "resources": [{"resources": ["pods/log/x"]}]}, "rules[0].resources[0].resources[0]"),
    (
        {"level": "None", "resources": [{"resourceNames": ["a"]}]},
        "rules[0].resources[0].resourceNames: needs resources",
    ),
    ({"level": "None", "nonResourceURLs": ["healthz"]}, "rules[0].nonResourceURLs[0]: must start with /"),
    ({"level": "None", "nonResourceURLs": ["/a*b"]}, "rules[0].nonResourceURLs[0]"),
    ({"level": "None", "nonResourceURLs": ["/a"], "namespaces": ["x"]}, "rules[0].nonResourceURLs: cannot be used"),
    ({"level": "None", "omitStages": ["Done"]}, "rules[0].omitStages[0]: must be one of Panic"),
    ({"level": "None", "omitManagedFields": "yes"}, "rules[0].omitManagedFields: must be true or false"),
]


@pytest.mark.parametrize(("rule", "message"), BAD_POLICIES)
def test_an_invalid_rule_is_an_error_naming_the_rule_and_field(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"FORWARDER_K8S_AUDIT_POLICY: {message}")):
        policy(rule)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n", "rules: must be a non-empty list"),
        ("apiVersion: audit.k8s.io/v1beta2\nkind: Policy\nrules: [{level: None}]\n", "apiVersion: must be"),
        ("apiVersion: audit.k8s.io/v1\nkind: Event\nrules: [{level: None}]\n", "kind: must be Policy"),
        ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrule: [{level: None}]\n", "policy: unknown field 'rule'"),
        ("rules: [level: None\n", "not valid YAML"),
        ('{"rules": [}', "not valid JSON"),
        ("- level: None\n", "must be a Policy object"),
        ("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n- level: Metadata\n  users: [a, 1]\n",
         "rules[1].users: must be a list of strings"),
    ],
)  # fmt: skip
def test_an_invalid_document_is_an_error_saying_what_is_wrong(document: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_policy(document)


def test_yaml_and_json_policies_are_the_same_policy() -> None:
    import yaml

    assert parse_policy(orjson.dumps(yaml.safe_load(DOCS_POLICY)).decode()) == parse_policy(DOCS_POLICY)


def run(log_events: list[str]) -> MessageRun:
    return MessageRun(0, tuple(LogEvent(f"id-{index}", 1733313600000, text) for index, text in enumerate(log_events)))


def test_the_processor_leaves_other_sources_and_untouched_runs_as_they_are() -> None:
    processor = K8sAuditPolicy(parse_policy(SEED_POLICY))
    noise = run(lines("written_eks-noise-and-secrets.jsonl"))
    pods = run(falco("create_nginx_pod_privileged.json"))

    assert processor.process(noise, Source("cloudtrail", "cloudtrail", "bucket")) == (noise, 0)
    assert processor.process(pods, AUDIT) == (pods, 0)


def test_the_processor_keeps_reduced_events_in_place_and_counts_the_filtered() -> None:
    processor = K8sAuditPolicy(parse_policy(SEED_POLICY))
    noise = run(lines("written_eks-noise-and-secrets.jsonl"))

    kept, filtered = apply([processor], noise, AUDIT)

    assert isinstance(kept, EventList) and filtered == 5
    assert [event.position for event in kept.events()] == [4, 5, 6]
    assert [event.event_id for event in kept.events()] == ["id-4", "id-5", "id-6"]
    assert kept.last() == noise.last()
    assert all(event.timestamp_ms == 1733313600000 for event in kept.events())


def test_the_processor_filters_a_whole_block_to_none() -> None:
    processor = K8sAuditPolicy(parse_policy(SEED_POLICY))
    line = RawEvent.line(3, lines("written_eks-noise-and-secrets.jsonl")[0], 120)

    assert processor.process(line, AUDIT) == (None, 1)
    gap = Gap(RawEvent.marker(3, 120))  # blank lines of an audit file in S3: nothing to apply to
    assert processor.process(gap, AUDIT) == (gap, 0)


def forwarder_settings(**env: str) -> ForwarderSettings:
    return ForwarderSettings.from_env({"DD_API_KEY": "k", **env})


def test_an_inline_policy_is_checked_at_start() -> None:
    wrong = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None}, {level: Loud}]"
    with pytest.raises(ConfigError, match=re.escape("FORWARDER_K8S_AUDIT_POLICY: rules[1].level")):
        forwarder_settings(FORWARDER_K8S_AUDIT_POLICY=wrong)
    assert forwarder_settings(FORWARDER_K8S_AUDIT_POLICY=SEED_POLICY).k8s_audit_policy == SEED_POLICY.strip()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FORWARDER_K8S_AUDIT_POLICY": "ssm:"}, "ssm: names no parameter"),
        ({"FORWARDER_K8S_AUDIT_POLICY": "s3://bucket-only"}, "must be s3://bucket/key"),
        ({"FORWARDER_K8S_AUDIT_POLICY": SEED_POLICY, "DD_SOURCE": "k8s"}, "DD_SOURCE renames"),
    ],
)
def test_a_policy_reference_that_cannot_work_is_refused_at_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        forwarder_settings(**env)


NAMES = st.sampled_from(["", "alice", "pods", "log", "kube-system", "apps", "/healthz", "None", "Metadata"])
ODD = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.lists(NAMES, max_size=2),
    st.dictionaries(NAMES, NAMES),
)
VALUES = st.one_of(NAMES, ODD)
LEVEL_NAMES = st.sampled_from(["Metadata", "Request", "RequestResponse"])
USERS = st.fixed_dictionaries({"username": VALUES, "groups": st.lists(VALUES, max_size=3)})


@st.composite
def audit_events(draw: st.DrawFn) -> str:
    """Events with the fields a rule looks at, each sometimes absent or of the wrong type."""
    fields = {
        "level": draw(st.one_of(LEVEL_NAMES, VALUES)),
        "stage": draw(st.one_of(st.sampled_from(["RequestReceived", "ResponseComplete"]), VALUES)),
        "verb": draw(VALUES),
        "requestURI": draw(VALUES),
        "user": draw(st.one_of(USERS, ODD)),
        "objectRef": draw(st.one_of(st.dictionaries(st.sampled_from(["resource", "subresource", "namespace",
                                                                       "name", "apiGroup"]), VALUES), ODD)),
        "requestObject": draw(st.one_of(st.just({"metadata": {"managedFields": [1]}}), ODD)),
        "responseObject": draw(st.one_of(st.just({"items": [{"metadata": {"managedFields": []}}]}), ODD)),
    }  # fmt: skip
    present = draw(st.sets(st.sampled_from(sorted(fields))))
    return orjson.dumps({key: value for key, value in fields.items() if key in present}).decode()


RULES = st.fixed_dictionaries(
    {"level": st.sampled_from(["None", "Metadata", "Request", "RequestResponse"])},
    optional={
        "users": st.lists(NAMES.filter(bool), max_size=2),
        "verbs": st.lists(NAMES.filter(bool), max_size=2),
        "resources": st.lists(st.fixed_dictionaries({"group": st.sampled_from(["", "*", "apps"]),
                                                     "resources": st.lists(st.sampled_from(["pods", "pods/*", "*"]))})),
        "omitStages": st.lists(st.sampled_from(["RequestReceived", "Panic"]), max_size=1),
        "omitManagedFields": st.booleans(),
    },
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(rules=st.lists(RULES, min_size=1, max_size=3), text=audit_events())
def test_any_policy_on_any_event_only_reduces_and_never_raises(rules: list[dict[str, Any]], text: str) -> None:
    applied = policy(*rules).apply(text)
    if applied is None or applied is text:
        return
    before, after = orjson.loads(text), orjson.loads(applied)
    assert set(after) <= set(before) | {"level"}
    assert {key: value for key, value in after.items() if key not in ("level", "requestObject", "responseObject")} == {
        key: value for key, value in before.items() if key not in ("level", "requestObject", "responseObject")
    }
    arrived = LEVELS.get(before["level"]) if type(before.get("level")) is str else None
    assert arrived is None or LEVELS[after["level"]] <= arrived


def test_relabelling_alone_changes_only_the_level_bytes() -> None:
    text = event(level="Request", annotations={"authorization.k8s.io/decision": "allow"})
    assert policy({"level": "Metadata"}).apply(text) == text.replace('"level":"Request"', '"level":"Metadata"')


@pytest.mark.parametrize(
    "text",
    [
        '{"annotations":{"level":"Request"},"level":"Request","verb":"get","user":{"username":"alice"}}',
        '{"user":{"username":"level"},"level":"Request","verb":"get"}',
        '{"verb":"level","level":"Request","user":{"username":"alice"}}',
        '{"level":"RequestResponse","verb":"get","level":"Request"}',
        '{"level" : "Request","verb":"get","requestObject":{"level":"Request"}}',
        '{"level":"Re\\u0071uest","verb":"get"}',
    ],
    ids=["nested-level-first", "username-says-level", "verb-says-level", "duplicate-key", "spaced-key", "escaped"],
)
def test_a_level_word_elsewhere_in_the_event_never_takes_the_relabel(text: str) -> None:
    """The relabel splices the level's bytes only where they are plainly the event's own key."""
    applied = policy({"level": "Metadata"}).apply(text)

    assert applied is not None
    expected = orjson.loads(text)
    expected["level"] = "Metadata"
    expected.pop("requestObject", None)
    assert orjson.loads(applied) == expected
    assert applied.count('"level":"Metadata"') == 1


NESTED_LEVELS = st.sampled_from(["annotations", "requestObject", "user"]).map(lambda name: {name: {"level": "Request"}})


@settings(max_examples=300, deadline=None)
@given(rules=st.lists(RULES, min_size=1, max_size=3), text=audit_events(), nested=st.one_of(st.none(), NESTED_LEVELS))
def test_the_level_splice_leaves_what_the_full_decode_leaves(
    rules: list[dict[str, Any]], text: str, nested: dict[str, Any] | None
) -> None:
    if nested is not None:
        text = orjson.dumps({**nested, **orjson.loads(text)}).decode()
    compiled = policy(*rules)
    spliced = compiled.apply(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(k8s_policy, "_relabelled", lambda *_: None)
        decoded = compiled.apply(text)
    assert (spliced is None, spliced is text) == (decoded is None, decoded is text)
    if spliced is not None:
        assert decoded is not None and orjson.loads(spliced) == orjson.loads(decoded)
