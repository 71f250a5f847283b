"""A worker process: reads sample requests (JSON lines) on stdin, runs each through the asked
paths, and writes protocol lines on its own stdout; everything else the libraries print goes
to stderr. One process runs many samples, so torch/torch-mlir/IREE load once; the driver
(tests.conformance.run) restarts it after a crash or a timeout.

Protocol (one line each, JSON after the tag):
  in:   {"id": "add|float32|0", "paths": ["kiln", "plain"]}
  out:  @@BEGIN {"id", "path"}        before a path runs (so a hang or crash is attributed)
        @@OUT {"id", "path", "outcome": {"kind", "detail", "seconds"}}
        @@END {"id", "skip": null | reason}   (skip: eager PyTorch itself fails the sample)
"""

from __future__ import annotations

import json
import os
import sys
import warnings


def _protocol_stream():
    """A private copy of stdout for protocol lines; fd 1 then points at stderr."""
    fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(fd, "w", buffering=1)


def main() -> None:
    out = _protocol_stream()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("KILN_CACHE", "0")
    import torch

    torch.set_num_threads(1)
    from tests.conformance.paths import Outcome, run_path
    from tests.conformance.samples import SampleId, build, eager

    def send(tag: str, payload: dict) -> None:
        out.write(f"{tag} {json.dumps(payload)}\n")
        out.flush()

    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        sample_id = request["id"]
        try:
            sample = build(SampleId.parse(sample_id))
            eager(sample)
        except Exception as error:  # noqa: BLE001 - eager cannot run it: not a test case
            send("@@END", {"id": sample_id, "skip": f"{type(error).__name__}: {error}"[:300]})
            continue
        for path in request["paths"]:
            send("@@BEGIN", {"id": sample_id, "path": path})
            try:
                outcome = run_path(path, sample)
            except Exception as error:  # noqa: BLE001 - the harness itself failed
                outcome = Outcome("crash", f"harness: {type(error).__name__}: {error}"[:300])
            send("@@OUT", {"id": sample_id, "path": path, "outcome": outcome.as_dict()})
        send("@@END", {"id": sample_id, "skip": None})


if __name__ == "__main__":
    main()
