"""`make bench` (`python -m bench`): the forwarder's throughput, memory and cold start, beside the machine's raw limit.

Inputs are generated deterministically and cached under `.bench/` (`bench.inputs`):

- CloudTrail log files, `{"Records":[...]}` minified and gzipped as a trail writes them, of about
  1.4 KB records built from the real fixture records (fresh eventIDs, requestIDs, source IPs and
  times; one record in 40 carries a hostile string: escaped quotes, `},{`, `"eventVersion"`, braces,
  backslashes, unicode, `\\u` escapes). They are written streaming, so 1 GB never sits in memory.
- EKS audit CloudWatch Logs subscription events (base64 of gzip of a DATA_MESSAGE of about 1 MB of
  audit lines built from the k8s-audit fixtures), as many as make up the size.
- for the processing tables, the same of a busy cluster's mix of audit events (`bench.auditmix`).

For each size, in one run:

- the raw limit (`bench.raw`): isal gunzip, orjson parse and orjson serialise of every record, isal
  gzip level 1 of 5 MB bodies; no network. It is what any Python forwarder that parses every event must pay.
- the forwarder (`bench.worker`): `forwarder.handler.handle` in a fresh interpreter per size (so its
  peak RSS is its own), reading from moto's S3 server in another process and delivering to a counting
  intake (`bench.intake`) in a third process that gunzips and parses every request, like Datadog's.
  The bench fails if the intake did not receive exactly the events generated. It runs again against
  the same intake told only to read and answer: on 2 shared cores, the decoding intake's own CPU slows
  the forwarder's wall clock.
- with `BENCH_BASELINE` (or `--baseline DIR`) naming a checkout of an earlier commit of this project,
  that checkout's forwarder runs the same way, with the same interpreter, on the same inputs, moto and
  intake: a hot-path change shows its before and after in one run.
- with `BENCH_DATADOG_FORWARDER` naming a directory that holds the Datadog Forwarder's
  `lambda_function.py` and what it imports (a checkout of aws/logs_monitoring; nothing of it is
  part of this project), its `lambda_handler` runs the same way (`bench.datadog`), for a side-by-side
  table, on inputs up to 100 MB (`BENCH_DATADOG_PYTHON` picks its interpreter).

Once, after the sizes, the processing tables (`bench.processing`), in this process on 10 MB inputs
(`--processing-mb`, `BENCH_PROCESSING_MB`; 0 for none), on the current code only: the filtering and
scrubbing rules on CloudTrail and the EKS audit mix against the plain run, and the Kubernetes audit
policy on the mix against none, with the events and bytes in and out of each.

Sizes are MB of uncompressed input (10^6 bytes): `BENCH_SIZES=10,100 make bench` or
`--sizes 10,100`; the default is 10,100,1000. Each measurement is the best of `--repeat` runs
(`BENCH_REPEAT`, default 3). `--profile` also profiles the forwarder on the 100 MB file with py-spy.
The table is printed and written to docs/performance.md (`bench.report`).

This module imports the standard library only: worker processes import it before choosing which
`forwarder` package to load, and the Datadog Forwarder's interpreter may have nothing else.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench"
FIXTURES = ROOT / "tests" / "fixtures"
ACCOUNT = "123456789012"
BUCKET = "bench-cloudtrail-bucket"
API_KEY = "bench-api-key-0000000000000000000"
DATADOG_API_KEY = "0123456789abcdef0123456789abcdef"  # the Datadog Forwarder insists on 32 characters
MB = 1_000_000
PROCESSING_MB = 10
"""The size of the inputs of the processing tables (`bench.processing`, `--processing-mb`; 0 for none)."""
