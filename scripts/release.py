"""Build the release: what a user who will not build deploys from.

    python scripts/release.py --repository-url https://github.com/<owner>/<repo> --author <publisher>

writes into dist/:
- forwarder-<version>-<arch>.zip and parquet-layer-<version>-<arch>.zip for arm64 and x86_64
  (scripts/package.py's build, so the same reproducible zips `make package` makes);
- template-sar.yaml: template.yaml for one architecture (--sar-arch, default arm64) as the AWS
  Serverless Application Repository and plain CloudFormation accept it: the SAR metadata, no
  AWS::LanguageExtensions transform, and each Fn::ForEach unrolled into a fixed number of slots
  (MAX_ITEMS) picked with Fn::Select, beside a guard that fails the deployment when a list is longer,
  and only resource types SAR's list has (AWS::IAM::Policy for each AWS::IAM::RolePolicy);
- LICENSE and README.md, which the metadata names (`sam package` uploads them with the zips);
- forwarder-<version>.sha256: the SHA-256 of each file above, in `sha256sum --check` format.

docs/deploy.md, "Deploying without building", says how each is used and what differs.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from cfnlint.decode import decode_str

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("arm64", "x86_64")
MAX_ITEMS = 10
"""Items of S3BucketNames and LogGroupNames the SAR template serves, each with its own resources."""
SAR_TEMPLATE = "template-sar.yaml"
LAYER_EXTRA = "parquet"
LABELS = ("security", "cloudtrail", "eks", "kubernetes-audit", "datadog", "siem", "logs", "forwarder")
_SPDX_BY_TEXT = {"Apache License\nVersion 2.0": "Apache-2.0", "MIT License": "MIT"}
_FOREACH = "Fn::ForEach::"


class ReleaseError(Exception):
    """The release could not be built; the message says which step failed."""


def _load_package_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("package_script", ROOT / "scripts" / "package.py")
    if spec is None or spec.loader is None:
        raise ReleaseError("scripts/package.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


package = _load_package_script()


def project(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, Any]:
    with pyproject.open("rb") as handle:
        return dict(tomllib.load(handle)["project"])


def spdx_license(license_text: str, declared: str) -> str:
    """The SPDX id of LICENSE's text, which must be the one pyproject.toml declares."""
    flat = "\n".join(line.strip() for line in license_text.strip().splitlines()[:3] if line.strip())
    found = [spdx for opening, spdx in _SPDX_BY_TEXT.items() if flat.startswith(opening)]
    if not found:
        raise ReleaseError(f"LICENSE: not a licence this script recognises (known: {sorted(_SPDX_BY_TEXT.values())})")
    if found[0] != declared:
        raise ReleaseError(f"LICENSE is {found[0]} but pyproject.toml declares {declared!r}")
    return found[0]


def artifact_names(version: str, arch: str) -> tuple[str, str]:
    """The function's zip and the Parquet layer's zip of a release, as dist/ holds them."""
    return f"forwarder-{version}-{arch}.zip", f"{LAYER_EXTRA}-layer-{version}-{arch}.zip"


def sar_metadata(meta: dict[str, Any], license_id: str, repository_url: str, author: str) -> dict[str, Any]:
    url = repository_url.rstrip("/")
    return {
        "Name": meta["name"],
        "Description": meta["description"][:256],
        "Author": author,
        "SpdxLicenseId": license_id,
        "LicenseUrl": "LICENSE",
        "ReadmeUrl": "README.md",
        "Labels": list(LABELS),
        "HomePageUrl": url,
        "SemanticVersion": meta["version"],
        "SourceCodeUrl": url,
    }


# --- Fn::ForEach, unrolled into slots -----------------------------------------------------------------


def padded_item(parameter: str, index: int) -> dict[str, Any]:
    """Item `index` of a CommaDelimitedList parameter, or "" past its end (the list padded with commas)."""
    padded = {"Fn::Join": [",", [{"Fn::Join": [",", {"Ref": parameter}]}, *[""] * (MAX_ITEMS + 1)]]}
    return {"Fn::Select": [str(index), {"Fn::Split": [",", padded]}]}


def _in_slot(node: Any, identifier: str, item: Any, slot: str) -> Any:
    """The loop's fragment for one slot: Ref and ${identifier} become the item, &{identifier} the slot."""
    if isinstance(node, list):
        return [_in_slot(child, identifier, item, slot) for child in node]
    if not isinstance(node, dict):
        return node.replace("&{" + identifier + "}", slot) if isinstance(node, str) else node
    if node == {"Ref": identifier}:
        return item
    if set(node) == {"Fn::Sub"}:
        text, variables = node["Fn::Sub"] if isinstance(node["Fn::Sub"], list) else (node["Fn::Sub"], {})
        text = text.replace("&{" + identifier + "}", slot)
        variables = {name: _in_slot(value, identifier, item, slot) for name, value in variables.items()}
        if "${" + identifier + "}" in text:
            variables[identifier] = item
        if not variables:
            return text if "${" not in text else {"Fn::Sub": text}
        return {"Fn::Sub": [text, variables]}
    return {key.replace("&{" + identifier + "}", slot): _in_slot(v, identifier, item, slot) for key, v in node.items()}


def unroll_foreach(template: dict[str, Any]) -> dict[str, Any]:
    """Each Fn::ForEach over a list parameter as MAX_ITEMS slots, slot i present when item i is not empty
    (and the fragment's own condition holds); a list longer than that fails the deployment."""
    out = copy.deepcopy(template)
    conditions = out.setdefault("Conditions", {})
    resources: dict[str, Any] = {}
    for name, body in out["Resources"].items():
        if not name.startswith(_FOREACH):
            resources[name] = body
            continue
        identifier, collection, fragment = body
        parameter = collection["Ref"]
        for index in range(MAX_ITEMS):
            item, slot = padded_item(parameter, index), str(index + 1)
            for key, resource in _in_slot(fragment, identifier, item, slot).items():
                own = resource.get("Condition")
                if not own:
                    raise ReleaseError(f"{name}: {key} has no Condition to drop the empty item an empty list yields")
                condition = f"{own}{slot}"
                conditions[condition] = {"Fn::And": [{"Condition": own}, {"Fn::Not": [{"Fn::Equals": [item, ""]}]}]}
                resources[key] = {**resource, "Condition": condition}
        resources.update(_length_guard(parameter, conditions))
    out["Resources"] = resources
    return out


def _length_guard(parameter: str, conditions: dict[str, Any]) -> dict[str, Any]:
    """A log group whose name CloudWatch Logs refuses (spaces and a colon), so the stack fails, and rolls
    back, when `parameter` lists more than MAX_ITEMS: its logical ID and its name say what is wrong.

    SAR's list of supported resource types has AWS::Logs::LogGroup, not AWS::CloudFormation::WaitCondition.
    """
    condition = f"{parameter}OverLimit"
    conditions[condition] = {"Fn::Not": [{"Fn::Equals": [padded_item(parameter, MAX_ITEMS), ""]}]}
    return {
        f"{parameter}ListsMoreThan{MAX_ITEMS}UseTheFullTemplate": {
            "Type": "AWS::Logs::LogGroup",
            "Condition": condition,
            # The name breaks LogGroupName's pattern on purpose: that is how this resource fails.
            "Metadata": {"cfn-lint": {"config": {"ignore_checks": ["E1155", "E3031"]}}},
            "Properties": {"LogGroupName": f"{parameter} has more than {MAX_ITEMS} names: deploy the full template"},
        },
    }


def role_policies_as_policies(resources: dict[str, Any]) -> dict[str, Any]:
    """Each AWS::IAM::RolePolicy as the AWS::IAM::Policy that grants the same to the same role: SAR's list of
    supported resource types has AWS::IAM::Policy, not AWS::IAM::RolePolicy."""
    out: dict[str, Any] = {}
    for name, resource in resources.items():
        if resource.get("Type") != "AWS::IAM::RolePolicy":
            out[name] = resource
            continue
        properties = {key: value for key, value in resource["Properties"].items() if key != "RoleName"}
        properties["Roles"] = [resource["Properties"]["RoleName"]]
        out[name] = {**resource, "Type": "AWS::IAM::Policy", "Properties": properties}
    return out


def sar_template(template: dict[str, Any], metadata: dict[str, Any], version: str, arch: str) -> dict[str, Any]:
    """template.yaml as SAR accepts it, for one architecture's release zips."""
    function_zip, layer_zip = artifact_names(version, arch)
    out = unroll_foreach(template)
    out["Resources"] = role_policies_as_policies(out["Resources"])
    transforms = [t for t in out["Transform"] if t != "AWS::LanguageExtensions"]
    out["Transform"] = transforms[0] if len(transforms) == 1 else transforms
    out["Metadata"] = {"AWS::ServerlessRepo::Application": metadata, **out.get("Metadata", {})}
    out["Description"] = (
        f"security-log-forwarder {version} ({arch}): forwards AWS CloudTrail, Amazon EKS audit logs and other "
        "AWS security logs to the Datadog Logs API v2 or another HTTP intake. The release template: at most "
        f"{MAX_ITEMS} S3BucketNames and {MAX_ITEMS} LogGroupNames (docs/deploy.md, Deploying without building)."
    )
    out["Parameters"]["Architecture"] = {
        **out["Parameters"]["Architecture"],
        "Default": arch,
        "AllowedValues": [arch],
        "Description": f"The release zips of this template are built for {arch}.",
    }
    out["Resources"]["ForwarderFunction"]["Properties"]["CodeUri"] = function_zip
    out["Resources"]["ParquetLayer"]["Properties"]["ContentUri"] = layer_zip
    return out


def has_foreach(node: Any) -> bool:
    if isinstance(node, dict):
        return any(str(key).startswith(_FOREACH) or has_foreach(child) for key, child in node.items())
    if isinstance(node, list):
        return any(has_foreach(child) for child in node)
    return False


def load_template(path: Path = ROOT / "template.yaml") -> dict[str, Any]:
    template, matches = decode_str(path.read_text())
    if matches:
        raise ReleaseError(f"{path} does not parse: {[str(m) for m in matches]}")
    return dict(_plain(template))


def _plain(node: Any) -> Any:
    """cfn-lint's decoded nodes as plain dicts, lists and strings (yaml.safe_dump takes nothing else)."""
    if isinstance(node, dict):
        return {str(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if isinstance(node, str):
        return str(node)
    return node


def write_sar_template(template: dict[str, Any], path: Path) -> None:
    if has_foreach(template) or "AWS::LanguageExtensions" in str(template.get("Transform")):
        raise ReleaseError("the SAR template still uses Fn::ForEach or AWS::LanguageExtensions")
    header = "# Generated by scripts/release.py from template.yaml: edit that, not this.\n"
    path.write_text(header + yaml.safe_dump(template, sort_keys=False, width=120, allow_unicode=True))


# --- the release ------------------------------------------------------------------------------------


def sha256sums(paths: Sequence[Path]) -> str:
    """`<hex>  <name>` lines, as `sha256sum --check` reads them."""
    lines = []
    for path in paths:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        lines.append(f"{digest.hexdigest()}  {path.name}\n")
    return "".join(lines)


def default_repository_url() -> str:
    """origin's URL when it is an https one (the SAR metadata needs a page to link to), else ""."""
    result = subprocess.run(
        ["git", "-C", str(ROOT), "remote", "get-url", "origin"], capture_output=True, text=True, check=False
    )
    url = result.stdout.strip().removesuffix(".git")
    return url if result.returncode == 0 and re.match(r"^https://[^\s]+$", url) else ""


def release(
    dist: Path,
    repository_url: str,
    author: str,
    archs: Sequence[str] = ARCHS,
    sar_arch: str = "arm64",
    build: Callable[..., Path] | None = None,
    build_layer: Callable[..., Path] | None = None,
) -> list[Path]:
    """Build every artifact into dist; the files written, the checksum file last."""
    if not re.match(r"^https://[^\s]+$", repository_url):
        raise ReleaseError("the SAR metadata needs --repository-url https://... (HomePageUrl, SourceCodeUrl)")
    if not re.match(r"^[a-z0-9](([a-z0-9]|-(?!-))*[a-z0-9])?$", author):
        raise ReleaseError(f"--author {author!r}: SAR wants lower-case letters, digits and single hyphens")
    if sar_arch not in archs:
        raise ReleaseError(f"--sar-arch {sar_arch} is not among the architectures built ({', '.join(archs)})")
    build = build or package.build
    build_layer = build_layer or package.build_layer
    meta = project()
    version = meta["version"]
    license_id = spdx_license((ROOT / "LICENSE").read_text(), meta["license"])
    dist.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for arch in archs:
        function_zip, layer_zip = artifact_names(version, arch)
        written.append(build(dist / function_zip, arch=arch))
        written.append(build_layer(LAYER_EXTRA, dist / layer_zip, arch=arch))
    template = sar_template(load_template(), sar_metadata(meta, license_id, repository_url, author), version, sar_arch)
    write_sar_template(template, dist / SAR_TEMPLATE)
    written.append(dist / SAR_TEMPLATE)
    for name in ("LICENSE", "README.md"):
        shutil.copyfile(ROOT / name, dist / name)
        written.append(dist / name)
    sums = dist / f"forwarder-{version}.sha256"
    sums.write_text(sha256sums(written))
    return [*written, sums]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--repository-url", default=default_repository_url(), help="https://github.com/<owner>/<repo>")
    parser.add_argument("--author", default="", help="the SAR publisher name: lower-case, digits, hyphens")
    parser.add_argument("--arch", action="append", choices=ARCHS, help="build only these (default: both)")
    parser.add_argument("--sar-arch", choices=ARCHS, default="arm64", help="the SAR template's (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        paths = release(args.dist, args.repository_url, args.author, tuple(args.arch or ARCHS), args.sar_arch)
    except (ReleaseError, package.PackageError) as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"{path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
