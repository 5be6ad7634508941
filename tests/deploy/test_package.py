"""scripts/package.py builds a zip that imports on a bare interpreter, as Lambda would load it."""

from __future__ import annotations

import importlib.util
import platform
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

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


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("package_script", ROOT / "scripts" / "package.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


package = _load_script()


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
