"""``flowkit bench`` under torchrun: two gloo ranks share the tasks, rank 0 reports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch.distributed as dist


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_gloo_ranks_gather_into_one_report(tmp_path: Path) -> None:
    assert dist.is_available() and dist.is_gloo_available()
    out = tmp_path / "report"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "flowkit.bench",
        "--suites",
        "accuracy",
        "--quick",
        "--integrators",
        "rk4,dopri5",
        "--traces",
        "analytic",
        "--gradients",
        "backprop",
        "--repeats",
        "1",
        "--budget",
        "0",
        "--out",
        str(out),
        "--no-plots",
        "--no-progress",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["world_size"] == 2
    ranks = sorted(rank for res in report["results"] for rank in res["ranks"])
    assert ranks == [0, 1]  # two tasks, one per rank, both in rank 0's report
    assert all(res["status"] == "ok" for res in report["results"])
    assert proc.stdout.count("Report written") == 1  # only rank 0 writes
