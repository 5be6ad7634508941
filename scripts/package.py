"""Build the Lambda deployment zip: the `forwarder` package and its runtime dependencies.

    python scripts/package.py [--arch arm64|x86_64] [--python-version 3.13] [--output dist/forwarder-<arch>.zip]
    python scripts/package.py --layer parquet [--arch ...]   # dist/parquet-layer-<arch>.zip

Dependencies come from pyproject.toml's [project] dependencies (never listed twice) as manylinux
wheels for the target architecture and Python, whatever machine builds them. The AWS SDK
(boto3, botocore, s3transfer) is left out: every Lambda Python runtime ships one, new enough for
pyproject's floor; --include-sdk bundles it instead (docs/deploy.md weighs the two).

The zip is named after its architecture, and template.yaml's CodeUri after the `Architecture`
parameter, so a deployment cannot ship another machine's native libraries. It holds only what the
function imports: no test suites, C/C++ or Cython sources of the native libraries, or the local
intake (forwarder/devintake.py, a development tool).

`--layer <extra>` builds a Lambda layer instead: the [project.optional-dependencies] extra of that
name (`parquet`: pyarrow, for Amazon Security Lake) under python/, where Lambda puts layers on the
path, built the same way. The template adds it to the function when EnableParquet is true.

The zip is reproducible: entries sorted, timestamps fixed, no bytecode (Lambda's file system is
read-only, so a .pyc compiled by another interpreter would only be dead weight).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "forwarder"
DIST = ROOT / "dist"
RUNTIME_PYTHON = "3.13"
# Names as PEP 503 normalises them. The runtime provides these; nothing else we use needs them.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer"})
# Lambda's python3.12+ runtimes run on Amazon Linux 2023 (glibc 2.34): any of these tags loads.
PLATFORMS = {
    "arm64": ["manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64"],
    "x86_64": ["manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64"],
}
JUNK_DIRS = {"__pycache__", "tests", "test"}
# zstandard ships a second, CFFI backend (11 MB) beside its C extension; it loads only when asked
# for (PYTHON_ZSTANDARD_IMPORT_POLICY=cffi) and then needs cffi, which is not bundled anyway.
PRUNE_GLOBS = ("zstandard/_cffi.*.so", "zstandard/backend_cffi.py")
LAYER_PRUNE_GLOBS = {
    "parquet": (
        "pyarrow/include",
        "pyarrow/src",
        "pyarrow/libarrow_flight.so*",
        "pyarrow/_flight*.so",
    ),
}
"""What a layer's libraries ship that the forwarder never loads: pyarrow's headers and Arrow Flight
(RPC), loaded only by pyarrow.flight (no other library links it): 30 MB of the 155 MB unzipped."""
JUNK_SUFFIXES = {".pyc", ".pyo"} | {".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp", ".pyx", ".pxd"}
"""Bytecode, and the sources native libraries ship beside their compiled extensions."""
NOT_DEPLOYED = ("devintake.py",)
"""Modules of the forwarder package the function never imports: the local intake of `make demo`."""
MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class PackageError(Exception):
    """The package could not be built; the message says which step failed."""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise PackageError(f"pyproject.toml: cannot read a name in dependency {requirement!r}")
    return _normalise(match.group(1))


def runtime_requirements(pyproject: Path = ROOT / "pyproject.toml", include_sdk: bool = False) -> list[str]:
    """[project] dependencies, less what the Lambda runtime provides unless include_sdk."""
    with pyproject.open("rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    if include_sdk:
        return list(dependencies)
    return [req for req in dependencies if requirement_name(req) not in RUNTIME_PROVIDED]


def extra_requirements(extra: str, pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """An optional-dependencies extra of pyproject.toml (a layer's content), less the runtime's SDK."""
    with pyproject.open("rb") as handle:
        extras = tomllib.load(handle)["project"].get("optional-dependencies", {})
    if extra not in extras or extra == "dev":
        raise PackageError(f"pyproject.toml has no layer extra {extra!r}: use one of {sorted(set(extras) - {'dev'})}")
    return [req for req in extras[extra] if requirement_name(req) not in RUNTIME_PROVIDED]


def pip_install_command(requirements: Sequence[str], target: Path, arch: str, python_version: str) -> list[str]:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--target", str(target), "--only-binary=:all:", "--no-compile"]
    command += ["--implementation", "cp", "--python-version", python_version]
    for tag in PLATFORMS[arch]:
        command += ["--platform", tag]
    return [*command, *requirements]


def install_dependencies(requirements: Sequence[str], target: Path, arch: str, python_version: str) -> None:
    command = pip_install_command(requirements, target, arch, python_version)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackageError(
            f"pip could not install the dependencies for {arch}/cp{python_version}:\n{result.stderr.strip()}"
        )


def zip_path(arch: str) -> Path:
    """Where `make package` writes the zip for `arch`, and where template.yaml's CodeUri looks."""
    return DIST / f"forwarder-{arch}.zip"


def layer_path(extra: str, arch: str) -> Path:
    """Where `make package` writes a layer, and where template.yaml's ContentUri looks."""
    return DIST / f"{extra}-layer-{arch}.zip"


def copy_source(destination: Path, source: Path = ROOT / PACKAGE) -> None:
    ignored = shutil.ignore_patterns("__pycache__", "*.py[co]", *NOT_DEPLOYED)
    shutil.copytree(source, destination / PACKAGE, ignore=ignored)


def strip(tree: Path) -> None:
    """Drop what is never imported at run time: bytecode, test suites, console scripts."""
    shutil.rmtree(tree / "bin", ignore_errors=True)
    for pattern in PRUNE_GLOBS:
        for path in tree.glob(pattern):
            path.unlink()
    for path in sorted(tree.rglob("*"), reverse=True):
        if path.is_dir() and path.name in JUNK_DIRS and path.parent != tree / PACKAGE:
            shutil.rmtree(path)
        elif path.is_file() and path.suffix in JUNK_SUFFIXES:
            path.unlink()


def strip_debug_info(tree: Path, arch: str) -> None:
    """Drop the debug sections of the bundled C extensions: pysimdjson's alone carries 7 MB of them.

    llvm-strip reads either architecture; GNU strip only the machine's own. Without either, the
    libraries are bundled as they came, which works, and the zip is about 3 MiB larger.
    """
    tool = shutil.which("llvm-strip")
    if tool is None and platform.machine() == MACHINES[arch]:
        tool = shutil.which("strip")
    libraries = [str(path) for path in sorted(tree.rglob("*.so"))]
    if tool is None:
        print("note: no llvm-strip (or strip for this machine): C extensions keep their debug info", file=sys.stderr)
    elif libraries:
        subprocess.run([tool, "--strip-debug", *libraries], check=True)


def bundled_distributions(tree: Path) -> set[str]:
    return {_normalise(p.name.split("-")[0]) for p in tree.glob("*.dist-info")}


def write_zip(tree: Path, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in _files(tree):
            info = zipfile.ZipInfo(path.relative_to(tree).as_posix(), ZIP_EPOCH)
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    os.replace(partial, output)


def _files(tree: Path) -> Iterable[Path]:
    return sorted((p for p in tree.rglob("*") if p.is_file()), key=lambda p: p.relative_to(tree).as_posix())


def build(
    output: Path | None = None,
    arch: str = "arm64",
    python_version: str = RUNTIME_PYTHON,
    include_sdk: bool = False,
    staging: Path | None = None,
) -> Path:
    """Build the zip at output; the unzipped tree is left in staging when one is given."""
    if arch not in PLATFORMS:
        raise PackageError(f"unknown architecture {arch!r}: use one of {sorted(PLATFORMS)}")
    output = output or zip_path(arch)
    with tempfile.TemporaryDirectory(prefix="forwarder-package-") as scratch:
        tree = staging or Path(scratch) / "tree"
        if tree.exists():
            shutil.rmtree(tree)
        tree.mkdir(parents=True)
        install_dependencies(runtime_requirements(include_sdk=include_sdk), tree, arch, python_version)
        copy_source(tree)
        strip(tree)
        strip_debug_info(tree, arch)
        leaked = bundled_distributions(tree) & RUNTIME_PROVIDED
        if leaked and not include_sdk:
            # A dependency pulled the SDK in: it would shadow the runtime's copy, so say so.
            print(f"note: bundled because a dependency requires them: {sorted(leaked)}", file=sys.stderr)
        write_zip(tree, output)
    return output


def build_layer(
    extra: str, output: Path | None = None, arch: str = "arm64", python_version: str = RUNTIME_PYTHON
) -> Path:
    """Build the layer of an extra: its wheels for the Lambda platform under python/, stripped as the function's."""
    if arch not in PLATFORMS:
        raise PackageError(f"unknown architecture {arch!r}: use one of {sorted(PLATFORMS)}")
    output = output or layer_path(extra, arch)
    requirements = extra_requirements(extra)
    with tempfile.TemporaryDirectory(prefix=f"{extra}-layer-") as scratch:
        tree = Path(scratch) / "layer"
        install_dependencies(requirements, tree / "python", arch, python_version)
        for pattern in LAYER_PRUNE_GLOBS.get(extra, ()):
            for path in (tree / "python").glob(pattern):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        strip(tree / "python")
        strip_debug_info(tree, arch)
        write_zip(tree, output)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(PLATFORMS), default=os.environ.get("ARCH", "arm64"))
    parser.add_argument("--python-version", default=RUNTIME_PYTHON, help="of the Lambda runtime (default %(default)s)")
    parser.add_argument("--output", type=Path, help="zip to write (default dist/forwarder-<arch>.zip)")
    parser.add_argument("--staging", type=Path, help="keep the unzipped tree here (default: a temporary directory)")
    parser.add_argument("--include-sdk", action="store_true", help="bundle boto3/botocore instead of the runtime's")
    parser.add_argument("--layer", metavar="EXTRA", help="build the layer of this pyproject extra (parquet) instead")
    args = parser.parse_args(argv)
    try:
        if args.layer:
            zip_path = build_layer(args.layer, args.output, args.arch, args.python_version)
        else:
            zip_path = build(args.output, args.arch, args.python_version, args.include_sdk, args.staging)
    except PackageError as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    size = zip_path.stat().st_size
    print(f"{zip_path} ({args.arch}, python{args.python_version}): {size:,} bytes ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
