"""A Kubernetes audit `Policy` document (YAML or JSON), parsed and checked as the API server checks it.

A wrong policy is a ConfigError naming where it came from, the rule (its index) and the field, never a
policy that quietly lets more through: unknown fields are refused too, since a misspelt one
(`verb:` for `verbs:`) would widen a rule without a word.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from forwarder.errors import ConfigError
from forwarder.process.k8s_policy import LEVELS, STAGES, GroupResources, Policy, Rule

API_VERSION = "audit.k8s.io/v1"
VARIABLE = "FORWARDER_K8S_AUDIT_POLICY"


@functools.cache
def compiled(text: str, origin: str = VARIABLE) -> Policy:
    return parse_policy(text, origin)


def parse_policy(text: str, origin: str = VARIABLE) -> Policy:
    """A policy document (YAML or JSON) checked as the API server checks it; a ConfigError naming
    `origin`, the rule and the field otherwise."""
    document = _load(text, origin)
    problem = _Problem(origin)
    if not isinstance(document, dict):
        raise problem.at("", "must be a Policy object (apiVersion, kind, rules)")
    problem.known(document, "", {"apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields"})
    if document.get("apiVersion") != API_VERSION:
        raise problem.at("apiVersion", f"must be {API_VERSION}, got {_shown(document.get('apiVersion'))}")
    if document.get("kind") != "Policy":
        raise problem.at("kind", f"must be Policy, got {_shown(document.get('kind'))}")
    omit_stages = _stages(problem, document, "omitStages", "")
    omit_managed = problem.flag(document, "omitManagedFields", "", False)
    rules = document.get("rules")
    if not isinstance(rules, list) or not rules:
        raise problem.at("rules", "must be a non-empty list (with no rule, the API server records nothing)")
    return Policy(
        tuple(_rule(problem, rule, f"rules[{index}]", omit_stages, omit_managed) for index, rule in enumerate(rules)),
        omit_stages,
        omit_managed,
    )


def _load(text: str, origin: str) -> Any:
    if text.lstrip().startswith("{"):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{origin}: not valid JSON: {exc}") from None
    import yaml  # only when a YAML policy is set: the import costs cold starts ~10 ms otherwise

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None


_RULE_FIELDS = {"level", "users", "userGroups", "verbs", "resources", "namespaces", "nonResourceURLs", "omitStages",
                "omitManagedFields"}  # fmt: skip


def _rule(problem: _Problem, rule: Any, where: str, omit_stages: frozenset[str], omit_managed: bool) -> Rule:
    if not isinstance(rule, dict):
        raise problem.at(where, "must be an object")
    problem.known(rule, where, _RULE_FIELDS)
    named = rule.get("level")
    level = LEVELS.get(named) if isinstance(named, str) else None
    if level is None:
        raise problem.at(f"{where}.level", f"must be one of {', '.join(LEVELS)}, got {_shown(named)}")
    resources = rule.get("resources", [])
    if not isinstance(resources, list):
        raise problem.at(f"{where}.resources", "must be a list")
    urls = problem.strings(rule, "nonResourceURLs", where)
    namespaces = problem.strings(rule, "namespaces", where)
    if urls and (resources or namespaces):
        raise problem.at(f"{where}.nonResourceURLs", "cannot be used with resources or namespaces")
    for index, url in enumerate(urls):
        if url != "*" and (not url.startswith("/") or "*" in url[:-1]):
            raise problem.at(f"{where}.nonResourceURLs[{index}]", f"must start with / and end with any *, got {url!r}")
    return Rule(
        level=level,
        users=frozenset(problem.strings(rule, "users", where)),
        user_groups=frozenset(problem.strings(rule, "userGroups", where)),
        verbs=frozenset(problem.strings(rule, "verbs", where)),
        resources=tuple(_group(problem, item, f"{where}.resources[{i}]") for i, item in enumerate(resources)),
        namespaces=frozenset(namespaces),
        urls=tuple(urls),
        omit_stages=omit_stages | _stages(problem, rule, "omitStages", where),
        omit_managed_fields=problem.flag(rule, "omitManagedFields", where, omit_managed),
    )


def _group(problem: _Problem, item: Any, where: str) -> GroupResources:
    if not isinstance(item, dict):
        raise problem.at(where, "must be an object (group, resources, resourceNames)")
    problem.known(item, where, {"group", "resources", "resourceNames"})
    group = item.get("group", "")
    if type(group) is not str or not (group in ("", "*") or _is_group_name(group)):
        raise problem.at(f"{where}.group", f"must be an API group name without a version, got {_shown(group)}")
    resources = problem.strings(item, "resources", where)
    for index, resource in enumerate(resources):
        parts = resource.split("/")
        if len(parts) > 2 or not all(parts):
            raise problem.at(
                f"{where}.resources[{index}]", f"must be a resource or resource/subresource, got {resource!r}"
            )
    names = problem.strings(item, "resourceNames", where)
    if names and not resources:
        raise problem.at(f"{where}.resourceNames", "needs resources to name")
    return GroupResources(group, tuple(resources), frozenset(names))


def _is_group_name(group: str) -> bool:
    """A DNS subdomain, as validation requires (so `apps/v1`, with its version, is refused)."""
    labels = group.split(".")
    return len(group) <= 253 and all(
        label and len(label) <= 63 and label[0].isalnum() and label[-1].isalnum()
        and all(char.isascii() and (char.isalnum() or char == "-") and not char.isupper() for char in label)
        for label in labels
    )  # fmt: skip


def _stages(problem: _Problem, owner: Mapping[str, Any], field: str, where: str) -> frozenset[str]:
    stages = problem.strings(owner, field, where)
    for index, stage in enumerate(stages):
        if stage not in STAGES:
            path = f"{where}.{field}[{index}]" if where else f"{field}[{index}]"
            raise problem.at(path, f"must be one of {', '.join(sorted(STAGES))}, got {stage!r}")
    return frozenset(stages)


def _shown(value: Any) -> str:
    return "nothing" if value is None else repr(value)[:80]


class _Problem:
    """Builds ConfigErrors that name where the policy came from, the rule and the field."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def at(self, path: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.origin}: {path + ': ' if path else ''}{reason}")

    def known(self, owner: Mapping[str, Any], where: str, allowed: Iterable[str]) -> None:
        unknown = sorted(str(key) for key in owner if key not in allowed)
        if unknown:
            raise self.at(where or "policy", f"unknown field {unknown[0]!r} (a misspelt field would change nothing)")

    def strings(self, owner: Mapping[str, Any], field: str, where: str) -> list[str]:
        value = owner.get(field, [])
        if value is None:
            return []
        if not isinstance(value, list) or not all(type(item) is str for item in value):
            raise self.at(f"{where}.{field}" if where else field, "must be a list of strings")
        return value

    def flag(self, owner: Mapping[str, Any], field: str, where: str, default: bool) -> bool:
        value = owner.get(field, default)
        if type(value) is not bool:
            raise self.at(f"{where}.{field}" if where else field, f"must be true or false, got {_shown(value)}")
        return value
