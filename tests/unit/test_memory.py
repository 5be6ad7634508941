"""The allocator setting: freed megabyte buffers are reused, not faulted in again page by page."""

from __future__ import annotations

import subprocess
import sys

import pytest

from forwarder import memory

_FAULTS = """
import resource, sys
from forwarder import memory
if sys.argv[1] == "keep":
    assert memory.keep_freed_memory()
def churn():  # a few megabyte buffers alive at once, then all freed: a batch, its body, its gzip
    held = [b"x" * (4 << 20) for _ in range(4)]
    del held
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    kept, default = faults("keep"), faults("default")
    assert kept * 10 < default, (kept, default)


def test_applied_once_and_reports_whether_it_could():
    assert memory.keep_freed_memory() is memory.keep_freed_memory()
