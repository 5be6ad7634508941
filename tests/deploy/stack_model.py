"""template.yaml as CloudFormation would see it for one set of parameter values, without AWS.

Three small steps, each what CloudFormation itself does at deploy time:
- `expand_foreach`: the AWS::LanguageExtensions transform's Fn::ForEach, over literal lists and
  CommaDelimitedList parameters (the only collections this template uses);
- `evaluate_condition`: Fn::Equals/Not/And/Or/Condition over parameter values;
- `resolve`: drops resources and outputs whose condition is false, picks the Fn::If branch,
  removes AWS::NoValue, puts parameter values in place of their Ref (and of ${Name} in Fn::Sub),
  and computes Fn::Join, Fn::Split and Fn::Select once their operands are plain values.
Refs to resources and Fn::GetAtt are left as they are: tests compare against those forms.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "forwarder",
    "AWS::URLSuffix": "amazonaws.com",
}
NO_VALUE = object()
_FOREACH = "Fn::ForEach::"


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as plain dicts and lists, short-form tags (!Ref, !If...) in long form."""
    template, matches = decode_str(path.read_text())
    if matches:
        raise ValueError(f"{path} does not parse: {[str(m) for m in matches]}")
    return json.loads(json.dumps(template))


def parameter_values(template: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with overrides; lists for CommaDelimitedList, strings otherwise."""
    declared = template["Parameters"]
    unknown = set(overrides) - set(declared)
    if unknown:
        raise KeyError(f"not template parameters: {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        raw = overrides.get(name, spec.get("Default"))
        if raw is None:
            raise KeyError(f"parameter {name} has no default and no value")
        if spec["Type"] == "CommaDelimitedList":
            # CloudFormation turns "" into [""]: one empty item, which the template must survive.
            values[name] = [item.strip() for item in (raw if isinstance(raw, list) else str(raw).split(","))] or [""]
        else:
            values[name] = str(raw)
    return values


def cfn_parameter_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """The same values as `sam deploy --parameter-overrides` would pass them."""
    return {k: ",".join(v) if isinstance(v, list) else v for k, v in values.items()}


def _alnum(value: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", value)


def _put(text: str, name: str, value: str) -> str:
    return text.replace("${" + name + "}", value).replace("&{" + name + "}", _alnum(value))


def _substitute(node: Any, name: str, value: str) -> Any:
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] == name:
            return value
        if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            # Like the transform: a Sub left with no variable is a plain string.
            text = _put(node["Fn::Sub"], name, value)
            return text if "${" not in text else {"Fn::Sub": text}
        out = {}
        for key, child in node.items():
            new_key = _put(key, name, value)
            if key == "Fn::Sub":
                if isinstance(child, str):
                    out[new_key] = _put(child, name, value)
                    continue
                child = [_put(child[0], name, value), *child[1:]]
            out[new_key] = _substitute(child, name, value)
        return out
    if isinstance(node, list):
        return [_substitute(item, name, value) for item in node]
    return node


def expand_foreach(node: Any, values: Mapping[str, Any]) -> Any:
    """Every `Fn::ForEach::Name: [Identifier, Collection, {OutputKey: OutputValue}]` unrolled."""
    if isinstance(node, list):
        return [expand_foreach(item, values) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, child in node.items():
        if not key.startswith(_FOREACH):
            out[key] = expand_foreach(child, values)
            continue
        identifier, collection, fragment = child
        items = values[collection["Ref"]] if isinstance(collection, dict) else collection
        for item in items:
            for out_key, out_value in _substitute(fragment, identifier, item).items():
                if out_key in out:
                    raise ValueError(f"{key}: duplicate key {out_key!r} for item {item!r}")
                out[out_key] = expand_foreach(out_value, values)
    return out


def _scalar(node: Any, values: Mapping[str, Any]) -> Any:
    """A Fn::Equals operand: a literal, a parameter, a pseudo parameter, or Fn::Join,
    Fn::Split or Fn::Select of those."""
    if isinstance(node, dict):
        if "Ref" in node:
            ref = node["Ref"]
            return PSEUDO[ref] if ref in PSEUDO else values[ref]
        if "Fn::Join" in node:
            sep, parts = node["Fn::Join"]
            parts = _scalar(parts, values)
            return sep.join(str(_scalar(p, values)) for p in parts)
        if "Fn::Split" in node:
            sep, text = node["Fn::Split"]
            return str(_scalar(text, values)).split(sep)
        if "Fn::Select" in node:
            index, items = node["Fn::Select"]
            return _scalar(items, values)[int(index)]
        raise ValueError(f"unsupported in a condition: {node}")
    if isinstance(node, list):
        return [_scalar(item, values) for item in node]
    return str(node)


def evaluate_condition(
    expr: Any, values: Mapping[str, Any], conditions: Mapping[str, Any], seen: tuple[str, ...] = ()
) -> bool:
    (fn, args), *rest = expr.items()
    if rest:
        raise ValueError(f"one function per condition node: {expr}")
    if fn == "Condition":
        if args in seen:
            raise ValueError(f"condition cycle: {[*seen, args]}")
        return evaluate_condition(conditions[args], values, conditions, (*seen, args))
    if fn == "Fn::Equals":
        left, right = (_scalar(a, values) for a in args)
        return left == right
    if fn == "Fn::Not":
        return not evaluate_condition(args[0], values, conditions, seen)
    if fn == "Fn::And":
        return all(evaluate_condition(a, values, conditions, seen) for a in args)
    if fn == "Fn::Or":
        return any(evaluate_condition(a, values, conditions, seen) for a in args)
    raise ValueError(f"unsupported condition function {fn}")


class Stack:
    """What one deployment would contain: resources, outputs, and the truth of each condition."""

    def __init__(self, template: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> None:
        self.values = parameter_values(template, overrides or {})
        expanded = expand_foreach(copy.deepcopy(dict(template)), self.values)
        self.expanded = expanded
        raw_conditions = expanded.get("Conditions", {})
        self.conditions = {
            name: evaluate_condition(expr, self.values, raw_conditions) for name, expr in raw_conditions.items()
        }
        self.resources = {
            name: self._resolve(body)
            for name, body in expanded["Resources"].items()
            if self.conditions.get(body.get("Condition", ""), True)
        }
        self.outputs = {
            name: self._resolve(body)
            for name, body in expanded.get("Outputs", {}).items()
            if self.conditions.get(body.get("Condition", ""), True)
        }

    def of_type(self, resource_type: str) -> dict[str, Any]:
        return {name: body for name, body in self.resources.items() if body["Type"] == resource_type}

    def rules_pass(self, template: Mapping[str, Any]) -> bool:
        """Whether CloudFormation's Rules section would accept these parameter values."""
        return rules_pass(template, self.values)

    def _resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self._resolve(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"}:
            ref = node["Ref"]
            if ref == "AWS::NoValue":
                return NO_VALUE
            if ref in PSEUDO:
                return PSEUDO[ref]
            if ref in self.values:
                return self.values[ref]
            return node
        if set(node) == {"Fn::If"}:
            name, if_true, if_false = node["Fn::If"]
            return self._resolve(if_true if self.conditions[name] else if_false)
        if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            text = re.sub(r"\$\{([^}!]+)\}", self._sub_variable, node["Fn::Sub"])
            return text if "${" not in text else {"Fn::Sub": text}
        if set(node) == {"Fn::Sub"}:
            return self._sub_with_variables(*node["Fn::Sub"])
        if set(node) == {"Fn::Join"}:
            sep, parts = (self._resolve(arg) for arg in node["Fn::Join"])
            if isinstance(parts, list) and all(isinstance(p, str) for p in parts):
                return sep.join(parts)
            return {"Fn::Join": [sep, parts]}
        if set(node) == {"Fn::Split"}:
            sep, text = (self._resolve(arg) for arg in node["Fn::Split"])
            return text.split(sep) if isinstance(text, str) else {"Fn::Split": [sep, text]}
        if set(node) == {"Fn::Select"}:
            index, items = (self._resolve(arg) for arg in node["Fn::Select"])
            return items[int(index)] if isinstance(items, list) else {"Fn::Select": [index, items]}
        resolved = {key: self._resolve(child) for key, child in node.items()}
        return {key: child for key, child in resolved.items() if child is not NO_VALUE}

    def _sub_with_variables(self, text: str, variables: Mapping[str, Any]) -> Any:
        """Fn::Sub's [text, {Name: value}] form: string values put in place, the rest left as a map."""
        resolved = {name: self._resolve(value) for name, value in variables.items()}
        left = {name: value for name, value in resolved.items() if not isinstance(value, str)}

        def variable(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in left:
                return match.group(0)
            value = resolved.get(name)
            return value if isinstance(value, str) else self._sub_variable(match)

        text = re.sub(r"\$\{([^}!]+)\}", variable, text)
        if left:
            return {"Fn::Sub": [text, left]}
        return text if "${" not in text else {"Fn::Sub": text}

    def _sub_variable(self, match: re.Match[str]) -> str:
        name = match.group(1)
        if name in PSEUDO:
            return PSEUDO[name]
        value = self.values.get(name)
        if isinstance(value, str):
            return value
        return match.group(0)


def rules_pass(template: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    """Whether the Rules accept these parameter values: each rule's assertions hold, or its RuleCondition does not.

    Rules cannot name the template's Conditions, and CloudFormation takes only rule functions and Ref in
    them (its "Rule functions" reference, "Supported functions"): anything else raises here.
    """
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not evaluate_rule(rule["RuleCondition"], values):
            continue
        if not all(evaluate_rule(assertion["Assert"], values) for assertion in rule["Assertions"]):
            return False
    return True


def evaluate_rule(expr: Any, values: Mapping[str, Any]) -> bool:
    """A rule's condition or assertion, with CloudFormation's rule functions only."""
    (fn, args), *rest = expr.items()
    if rest:
        raise ValueError(f"one function per rule node: {expr}")
    if fn == "Fn::Not":
        return not evaluate_rule(args[0], values)
    if fn in ("Fn::And", "Fn::Or"):
        if not 2 <= len(args) <= 10:
            raise ValueError(f"{fn} takes 2 to 10 conditions: {expr}")
        results = [evaluate_rule(arg, values) for arg in args]
        return all(results) if fn == "Fn::And" else any(results)
    left, right = (_rule_operand(arg, values) for arg in args)
    if fn == "Fn::Equals":
        return left == right
    if fn == "Fn::Contains":
        return right in left
    if fn == "Fn::EachMemberEquals":
        return all(member == right for member in left)
    if fn == "Fn::EachMemberIn":
        return all(member in right for member in left)
    raise ValueError(f"not a rule function CloudFormation takes: {fn}")


def _rule_operand(node: Any, values: Mapping[str, Any]) -> Any:
    """A literal, a list of literals, or a Ref: a rule function takes nothing else."""
    if isinstance(node, dict):
        if set(node) != {"Ref"}:
            raise ValueError(f"only Ref and rule functions in Rules, got {node}")
        return PSEUDO[node["Ref"]] if node["Ref"] in PSEUDO else values[node["Ref"]]
    if isinstance(node, list):
        return [_rule_operand(item, values) for item in node]
    return str(node)


def policy_statements(stack: Stack) -> list[dict[str, Any]]:
    """Every Allow/Deny statement granted to the function's role, inline or attached later."""
    statements: list[dict[str, Any]] = []
    role = stack.resources["ForwarderRole"]["Properties"]
    for policy in role.get("Policies", []):
        statements.extend(policy["PolicyDocument"]["Statement"])
    for body in stack.of_type("AWS::IAM::RolePolicy").values():
        assert body["Properties"]["RoleName"] == {"Ref": "ForwarderRole"}
        statements.extend(body["Properties"]["PolicyDocument"]["Statement"])
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        assert not stack.of_type(kind), f"{kind} would escape the grant checks"
    return statements


def grants(stack: Stack) -> set[tuple[str, str]]:
    """(action, resource) pairs the role allows, resources rendered as JSON when not a string.

    A statement's Condition is part of what it grants: its resources read `<resource> when <JSON>`.
    """
    pairs: set[tuple[str, str]] = set()
    for statement in policy_statements(stack):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        when = f" when {json.dumps(statement['Condition'], sort_keys=True)}" if "Condition" in statement else ""
        for action in actions:
            for resource in resources:
                text = resource if isinstance(resource, str) else json.dumps(resource, sort_keys=True)
                pairs.add((action, text + when))
    return pairs
