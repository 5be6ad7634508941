"""scripts/package.py builds a zip that imports on a bare interpreter, as Lambda would load it."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import stack_model
from cfnlint.api import lint
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

ROOT = Path(__file__).resolve().parents[2]
# Signs that pip could not reach the package index at all, as opposed to a real resolution error.
OFFLINE_MARKERS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Max retries exceeded",
    "ConnectTimeoutError",
    "Could not fetch URL",
)


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


package = _load_script("package")


def _host_arch() -> str:
    machine = platform.machine().lower()
    if machine in {"x86_64", "amd64"}:
        return "x86_64"
    if machine in {"aarch64", "arm64"}:
        return "arm64"
    pytest.skip(f"no Lambda architecture matches this host ({machine})")


def _skip_if_offline(message: str) -> None:
    if any(marker in message for marker in OFFLINE_MARKERS):
        pytest.skip(f"package index unreachable, cannot build the package: {message.splitlines()[-1]}")


def test_dependencies_come_from_pyproject_less_the_runtime_sdk():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bundled = package.runtime_requirements()
    assert set(bundled) == {
        d for d in declared if package.requirement_name(d) not in {"boto3", "botocore", "s3transfer"}
    }
    assert any(package.requirement_name(d) == "orjson" for d in bundled)
    assert package.runtime_requirements(include_sdk=True) == declared


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_each_architecture_has_its_own_zip(arch):
    """template.yaml's CodeUri is dist/forwarder-${Architecture}.zip: the names must agree."""
    assert package.zip_path(arch) == ROOT / "dist" / f"forwarder-{arch}.zip"
    assert "dist/forwarder-${Architecture}.zip" in (ROOT / "template.yaml").read_text()
    assert arch in package.PLATFORMS


def test_pip_targets_the_lambda_platform_not_the_host():
    command = package.pip_install_command(["orjson>=3.10"], Path("/t"), "arm64", "3.13")
    assert "--only-binary=:all:" in command
    assert command[command.index("--python-version") + 1] == "3.13"
    platforms = [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"]
    assert platforms and all(p.endswith("_aarch64") for p in platforms)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The package for this host's architecture and Python, plus a stand-in for the runtime's SDK."""
    work = tmp_path_factory.mktemp("package")
    arch = _host_arch()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    staging, zip_path = work / "tree", work / "forwarder.zip"
    try:
        package.build(zip_path, arch=arch, python_version=version, staging=staging)
    except package.PackageError as exc:
        _skip_if_offline(str(exc))
        raise
    # Lambda's runtime puts its own boto3 on sys.path after the function's code (/var/runtime).
    runtime = work / "runtime"
    sdk = [r for r in package.runtime_requirements(include_sdk=True) if package.requirement_name(r) == "boto3"]
    result = subprocess.run(
        package.pip_install_command(sdk, runtime, arch, version), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        _skip_if_offline(result.stderr)
        pytest.fail(f"could not install the runtime's SDK stand-in: {result.stderr}")
    return zip_path, staging, runtime


def test_zip_holds_the_tree_and_no_junk(built):
    zip_path, staging, _ = built
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        assert archive.testzip() is None
    assert names == sorted(names), "entries are sorted, so the zip is reproducible"
    on_disk = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    assert names == on_disk
    assert "forwarder/settings.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    # What the function never imports: the local intake, native libraries' sources, test suites.
    assert "forwarder/devintake.py" not in names
    assert not [n for n in names if n.endswith((".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp", ".pyx", ".pxd"))]
    assert not [n for n in names if "/tests/" in n or "/test/" in n]
    top = {n.split("/")[0] for n in names}
    assert not top & {"boto3", "botocore", "s3transfer", "bin"}, "the runtime provides the SDK"
    assert {"orjson", "isal", "zstandard", "requests", "aws_lambda_powertools"} <= top


def test_handler_imports_from_the_package_alone(built):
    zip_path, staging, runtime = built
    probe = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(staging)!r}, {str(runtime)!r}]
        import forwarder.handler
        assert callable(forwarder.handler.lambda_handler)
        import orjson, isal.igzip, zstandard, requests, aws_lambda_powertools, boto3
        for module in (forwarder, orjson, isal, zstandard, requests, aws_lambda_powertools):
            assert module.__file__.startswith({str(staging)!r}), module.__file__
        assert boto3.__file__.startswith({str(runtime)!r}), boto3.__file__
        zstandard.ZstdDecompressor().decompressobj()
        print("ok")
        """
    )
    env = {
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "forwarder",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    # -I: no PYTHON* variables, no user site; -S: not even this venv's site-packages.
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, env=env, cwd=zip_path.parent
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_parquet_layer_holds_the_parquet_extra_where_the_template_looks():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["parquet"]
    assert package.extra_requirements("parquet") == declared
    assert any(package.requirement_name(d) == "pyarrow" for d in declared)
    assert package.layer_path("parquet", "arm64") == ROOT / "dist" / "parquet-layer-arm64.zip"
    assert "dist/parquet-layer-${Architecture}.zip" in (ROOT / "template.yaml").read_text()
    with pytest.raises(package.PackageError, match="no layer extra 'dev'"):
        package.extra_requirements("dev")


# --- the release: prebuilt zips and a Serverless Application Repository template -----------------


release = _load_script("release")
REPOSITORY = "https://github.com/example/security-log-forwarder"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
SAR_CASES = {
    "defaults": {},
    "buckets-and-groups": {
        "S3BucketNames": "org-trail-logs,eks-audit.archive",
        "LogGroupNames": "/aws/eks/prod/cluster,/aws/eks/staging/cluster",
        "LogGroupEksAuditOnly": "true",
        "DdFetchS3Tags": "true",
        "DdFetchLogGroupTags": "true",
    },
    "notifications-to-the-function": {
        "S3BucketNames": ",".join(f"trail-{i}" for i in range(10)),
        "S3Delivery": "S3Notification",
        "UseQueue": "false",
        "LogGroupNames": ",".join(f"/aws/eks/c{i}/cluster" for i in range(10)),
    },
    "eks-only": {"S3Delivery": "None", "LogGroupNames": "/aws/eks/prod/cluster", "K8sAuditPolicySsmName": "/p"},
}
KEY = {"DdApiKey": "0123456789abcdef0123456789abcdef"}
# The entries of AWS's "List of Supported AWS Resources" for SAR that the SAR template uses, before and after
# the SAM transform: awsdocs/aws-serverlessrepo-developer-guide, doc_source/list-supported-resources.md at
# commit 5e8664b (2021-02-08, the last copy published there). SAR refuses a template with a type not listed.
SAR_LISTED_TYPES = frozenset(
    {
        *("AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard", "AWS::DynamoDB::Table", "AWS::Events::Rule"),
        *("AWS::IAM::Policy", "AWS::IAM::Role", "AWS::Logs::LogGroup", "AWS::Logs::SubscriptionFilter"),
        *("AWS::Lambda::EventSourceMapping", "AWS::Lambda::Function", "AWS::Lambda::LayerVersion"),
        *("AWS::Lambda::Permission", "AWS::S3::Bucket", "AWS::S3::BucketPolicy", "AWS::SNS::Subscription"),
        *("AWS::SQS::Queue", "AWS::SQS::QueuePolicy", "AWS::Serverless::Function", "AWS::Serverless::LayerVersion"),
    }
)
# Not in that 2021 list, so not confirmed: the secret created when DdApiKey is given (docs/deploy.md says to
# check SAR's current list, or to pass DdApiKeySecretArn, which creates none).
SAR_UNCONFIRMED_TYPES = frozenset({"AWS::SecretsManager::Secret"})


@pytest.fixture(scope="module")
def full_template() -> dict[str, Any]:
    return stack_model.load_template()


@pytest.fixture(scope="module")
def sar(full_template: dict[str, Any]) -> dict[str, Any]:
    meta = release.sar_metadata(release.project(), "Apache-2.0", REPOSITORY, "example")
    return json.loads(json.dumps(release.sar_template(release.load_template(), meta, VERSION, "arm64")))


def test_the_sar_template_has_no_language_extensions_and_lints(sar, tmp_path):
    assert not release.has_foreach(sar)
    assert sar["Transform"] == "AWS::Serverless-2016-10-31"
    path = tmp_path / release.SAR_TEMPLATE
    release.write_sar_template(sar, path)
    assert "Fn::ForEach" not in path.read_text() and "LanguageExtensions" not in path.read_text()
    assert [str(m) for m in lint(path.read_text()) if m.rule.id.startswith("E")] == []


def test_the_sar_metadata(sar):
    meta = sar["Metadata"]["AWS::ServerlessRepo::Application"]
    assert set(meta) == {
        *("Name", "Description", "Author", "SpdxLicenseId", "LicenseUrl", "ReadmeUrl", "Labels"),
        *("HomePageUrl", "SemanticVersion", "SourceCodeUrl"),
    }
    assert (meta["SemanticVersion"], meta["SpdxLicenseId"]) == (VERSION, "Apache-2.0")
    assert (meta["LicenseUrl"], meta["ReadmeUrl"]) == ("LICENSE", "README.md")
    assert meta["HomePageUrl"] == meta["SourceCodeUrl"] == REPOSITORY
    assert len(meta["Description"]) <= 256 and len(meta["Labels"]) <= 10
    assert all(re.fullmatch(r"[a-zA-Z0-9+\-_:/@]{1,127}", label) for label in meta["Labels"])


def test_the_licence_is_read_from_license_and_must_agree_with_pyproject():
    text = (ROOT / "LICENSE").read_text()
    assert release.spdx_license(text, "Apache-2.0") == "Apache-2.0"
    with pytest.raises(release.ReleaseError, match="declares 'MIT'"):
        release.spdx_license(text, "MIT")


def test_the_sar_template_deploys_its_own_architecture_s_release_zips(sar):
    function = sar["Resources"]["ForwarderFunction"]["Properties"]
    assert function["CodeUri"] == f"forwarder-{VERSION}-arm64.zip"
    assert sar["Resources"]["ParquetLayer"]["Properties"]["ContentUri"] == f"parquet-layer-{VERSION}-arm64.zip"
    assert sar["Parameters"]["Architecture"]["AllowedValues"] == ["arm64"]


def _as_role_policies(stack: stack_model.Stack) -> stack_model.Stack:
    """The SAR stack with each AWS::IAM::Policy as the AWS::IAM::RolePolicy template.yaml writes, so that
    stack_model.grants, which refuses AWS::IAM::Policy, counts its statements: only a policy attached to the
    function's role alone, and nothing else, converts."""
    converted = copy.copy(stack)
    converted.resources = dict(stack.resources)
    for name, body in stack.of_type("AWS::IAM::Policy").items():
        properties = dict(body["Properties"])
        assert properties.pop("Roles") == [{"Ref": "ForwarderRole"}], name
        assert set(properties) == {"PolicyName", "PolicyDocument"}, f"{name}: attached to users or groups too"
        converted.resources[name] = {
            **body,
            "Type": "AWS::IAM::RolePolicy",
            "Properties": {"RoleName": {"Ref": "ForwarderRole"}, **properties},
        }
    return converted


@pytest.mark.parametrize("case", sorted(SAR_CASES))
def test_the_sar_template_makes_the_same_stack_up_to_names(full_template, sar, case):
    """Up to ten buckets and log groups: the same grants, rules, wiring and variables, resources named by slot,
    each of template.yaml's role policies an AWS::IAM::Policy on the same role."""
    overrides = {**KEY, **SAR_CASES[case]}
    full, sar_stack = stack_model.Stack(full_template, overrides), stack_model.Stack(sar, overrides)
    assert not sar_stack.of_type("AWS::IAM::RolePolicy")
    unrolled = _as_role_policies(sar_stack)
    assert stack_model.grants(unrolled) == stack_model.grants(full)
    assert unrolled.rules_pass(sar) == full.rules_pass(full_template) is True

    def kinds(stack: stack_model.Stack) -> list[str]:
        return sorted(body["Type"] for body in stack.resources.values())

    assert kinds(unrolled) == kinds(full)

    def wiring(stack: stack_model.Stack) -> list[str]:
        kinds = ("AWS::Logs::SubscriptionFilter", "AWS::Lambda::Permission")
        return sorted(
            json.dumps({k: v for k, v in body["Properties"].items() if k != "PolicyName"}, sort_keys=True)
            for body in stack.resources.values()
            if body["Type"] in kinds
        )

    assert wiring(unrolled) == wiring(full)
    environment = stack_model.Stack(sar, overrides).resources["ForwarderFunction"]["Properties"]["Environment"]
    assert environment == full.resources["ForwarderFunction"]["Properties"]["Environment"]
    assert {r for r in unrolled.resources if "OverLimit" in r or "MoreThan" in r} == set()


@pytest.mark.parametrize("parameter", ["S3BucketNames", "LogGroupNames"])
def test_a_longer_list_fails_the_sar_deployment_rather_than_leave_items_out(sar, parameter):
    items = [f"/aws/eks/c{i}/cluster" if parameter == "LogGroupNames" else f"trail-{i}" for i in range(11)]
    at_limit = stack_model.Stack(sar, {**KEY, parameter: ",".join(items[:10])})
    over = stack_model.Stack(sar, {**KEY, parameter: ",".join(items)})
    guard = f"{parameter}ListsMoreThan{release.MAX_ITEMS}UseTheFullTemplate"
    assert guard not in at_limit.resources
    assert over.resources[guard]["Type"] == "AWS::Logs::LogGroup"
    name = over.resources[guard]["Properties"]["LogGroupName"]
    assert name == f"{parameter} has more than {release.MAX_ITEMS} names: deploy the full template"
    # CloudFormation checks the name against the resource's schema (cfn-lint carries the same), and
    # CloudWatch Logs against its own pattern: the guard cannot be created, so the stack rolls back.
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", "AWS::Logs::LogGroup").schema
    assert not re.match(schema["properties"]["LogGroupName"]["pattern"], name)
    assert not re.fullmatch(r"[.\-_/#A-Za-z0-9]+", name)
    assert [r for r in over.resources if "OverLimit" in r] == []


@pytest.mark.parametrize("case", sorted(SAR_CASES))
def test_the_sar_template_uses_only_resource_types_sar_lists(sar, case):
    """SAR checks every resource of the template it is given; the SAM transform's output must pass too, for
    whoever deploys the same template with CloudFormation's own SAM transform."""
    assert {body["Type"] for body in sar["Resources"].values()} <= SAR_LISTED_TYPES | SAR_UNCONFIRMED_TYPES
    transformed = _sam_transformed(sar, {**KEY, **SAR_CASES[case]})
    assert {body["Type"] for body in transformed["Resources"].values()} <= SAR_LISTED_TYPES | SAR_UNCONFIRMED_TYPES


def test_an_existing_secret_keeps_the_sar_stack_to_the_listed_types(sar):
    """The one type SAR's 2021 list lacks is the secret the stack makes of DdApiKey; DdApiKeySecretArn makes none."""
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:datadog-api-key-AbCdEf"
    for case in SAR_CASES.values():
        given_key = stack_model.Stack(sar, {**KEY, **case})
        given_arn = stack_model.Stack(sar, {"DdApiKeySecretArn": arn, **case})
        assert given_key.of_type("AWS::SecretsManager::Secret")
        assert {body["Type"] for body in given_arn.resources.values()} <= SAR_LISTED_TYPES


def _sam_transformed(sar: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """The SAR template as the SAM transform turns it into plain CloudFormation, the zips at stand-in S3 URIs."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    template = json.loads(json.dumps(sar))
    template["Resources"]["ForwarderFunction"]["Properties"]["CodeUri"] = "s3://artifacts/forwarder.zip"
    template["Resources"]["ParquetLayer"]["Properties"]["ContentUri"] = "s3://artifacts/parquet-layer.zip"
    values = stack_model.parameter_values(sar, overrides)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return dict(transform(template, stack_model.cfn_parameter_strings(values), NoManagedPolicies()))


def test_the_sar_template_passes_the_sam_transform(sar):
    output = _sam_transformed(sar, {**KEY, **SAR_CASES["buckets-and-groups"]})
    assert output["Resources"]["ForwarderFunction"]["Type"] == "AWS::Lambda::Function"
    assert [str(m) for m in lint(json.dumps(output)) if m.rule.id.startswith("E")] == []


def test_release_writes_both_architectures_the_template_and_their_checksums(tmp_path):
    """The builds themselves are package.py's (tested above); here they write stand-in zips."""

    def build(output: Path, arch: str) -> Path:
        output.write_bytes(f"function {arch}".encode())
        return output

    def build_layer(extra: str, output: Path, arch: str) -> Path:
        output.write_bytes(f"{extra} layer {arch}".encode())
        return output

    paths = release.release(tmp_path, REPOSITORY, "example", build=build, build_layer=build_layer)
    names = [p.name for p in paths]
    for arch in ("arm64", "x86_64"):
        assert f"forwarder-{VERSION}-{arch}.zip" in names and f"parquet-layer-{VERSION}-{arch}.zip" in names
    assert {"template-sar.yaml", "LICENSE", "README.md", f"forwarder-{VERSION}.sha256"} <= set(names)
    sums = dict(line.split("  ")[::-1] for line in (tmp_path / f"forwarder-{VERSION}.sha256").read_text().splitlines())
    assert set(sums) == set(names) - {f"forwarder-{VERSION}.sha256"}
    for name, digest in sums.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest
    written = (tmp_path / "template-sar.yaml").read_text()
    assert f"CodeUri: forwarder-{VERSION}-arm64.zip" in written
    with pytest.raises(release.ReleaseError, match="repository-url"):
        release.release(tmp_path, "", "example", build=build, build_layer=build_layer)


def test_make_release_runs_the_release_script():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^release: .*\n(\t.*\n)*\t.*scripts/release\.py", makefile, re.M)


def test_the_sar_template_says_what_it_is(sar):
    assert sar["Description"].startswith(f"security-log-forwarder {VERSION} (arm64)")
    assert "make package" not in sar["Description"]
