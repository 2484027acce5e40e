"""Driver overhead and wait-detection latency, measured in one run on this machine.

    python benchmarks/bench_driver.py            # ~3 minutes on 2 cores
    python benchmarks/bench_driver.py --limit 60 --latency-trials 5

1. Overhead: one demo round (tiny model, simulated labelers answering at once) on an embedded stack
   in a temp home. Overhead = the round's wall time minus the time inside the TRL/PEFT training call,
   the generation call and the wait for labelers, as a fraction of the round without the wait.
   Target: <= 5%.
2. Wait-detection latency: the time from the submission that completes a dataset to `wait` returning,
   with webhooks (poll interval 30 s, so only the webhook can explain a fast return) and with polling
   alone at the default 10 s interval; printed side by side with their ratio. Target: <= 1 s with
   webhooks.
3. CPU used while waiting: the driver process's CPU seconds per wall second during a wait with no
   progress (webhooks on, 1 s polls).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path


def overhead(limit: int, port: int) -> dict:
    from loop.demo.run import run_demo

    result = run_demo(
        rounds=1, simulate_labelers=2, limit=limit, port=port, report=lambda m: None, progress=False
    )
    state = json.loads((result.run_dir / "state.json").read_text())["rounds"]["1"]
    total = sum(p["seconds"] for p in state.values())
    train = state["train"]["summary"]["train_call_s"]
    generate = state["generate"]["summary"]["generate_runtime_s"]
    wait = state["wait"]["seconds"]
    work = total - wait
    return {
        "round_s": total,
        "wait_s": wait,
        "train_s": train,
        "generate_s": generate,
        "driver_s": work - train - generate,
        "overhead_fraction": (work - train - generate) / work,
        "per_phase_s": {k: round(v["seconds"], 2) for k, v in state.items()},
    }


def _dataset(api_url: str, api_key: str, n: int):
    import argilla as rg

    from argilla_setup import schema, users
    from argilla_setup.connection import Api, Connection, client

    tag = uuid.uuid4().hex[:6]
    conn = Connection(api_url, api_key)
    owner = Api(conn)
    (user,) = users.add_users(owner, [f"bench-{tag}"], workspace=f"bench-{tag}", create_workspace=True)
    sdk = client(conn)
    ds = rg.Dataset(
        name=f"lat-{tag}",
        workspace=f"bench-{tag}",
        settings=schema.round_settings(1, 2, client=sdk),
        client=sdk,
    )
    ds.create()
    ds.records.log([{"question": f"q{i}", "candidate_1": "a", "candidate_2": "b"} for i in range(n)])
    key = json.loads(user.credentials_file.read_text())["api_key"]
    return owner, str(ds.id), Api(Connection(api_url, key))


def latency(api_url: str, api_key: str, *, webhooks: bool, poll: float, trials: int) -> list[float]:
    from argilla_setup import rankings
    from loop.config import WaitSettings
    from loop.phases.wait import wait_for_completion

    out = []
    for _ in range(trials):
        owner, dataset_id, annotator = _dataset(api_url, api_key, 5)
        records, _ = rankings.pending_records(annotator, dataset_id)
        values = rankings.response_values(["candidate_1", "candidate_2"])
        for rec in records[:-1]:
            rankings.submit_response(annotator, rec["id"], values)
        submitted_at: list[float] = []

        def last(api=annotator, rec=records[-1], vals=values, stamps=submitted_at) -> None:
            time.sleep(1.5)
            stamps.append(time.monotonic())
            rankings.submit_response(api, rec["id"], vals)

        t = threading.Thread(target=last)
        t.start()
        wait_for_completion(
            owner,
            dataset_id,
            WaitSettings(poll_interval_s=poll, webhooks=webhooks),
            tag=f"bench-{dataset_id}",
        )
        out.append(time.monotonic() - submitted_at[0])
        t.join()
    return out


def idle_cpu(api_url: str, api_key: str, seconds: float) -> float:
    from loop.config import WaitSettings
    from loop.phases.wait import wait_for_completion

    owner, dataset_id, _ = _dataset(api_url, api_key, 2)
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic()
    wait_for_completion(
        owner,
        dataset_id,
        WaitSettings(poll_interval_s=1, webhooks=True, timeout_s=seconds, on_timeout="proceed"),
        tag="idle",
    )
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / (time.monotonic() - wall)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=40, help="FAQ entries in the overhead round")
    parser.add_argument("--latency-trials", type=int, default=3)
    args = parser.parse_args(argv)

    from argilla_setup import server

    with tempfile.TemporaryDirectory(prefix="pickloop-bench-") as home:
        os.environ["PICKLOOP_HOME"] = home
        port = server.free_port()
        try:
            ov = overhead(args.limit, port)
            info = server.start(Path(home) / "argilla", port=port)
            hook = latency(info.api_url, info.api_key, webhooks=True, poll=30, trials=args.latency_trials)
            poll = latency(info.api_url, info.api_key, webhooks=False, poll=10, trials=args.latency_trials)
            cpu = idle_cpu(info.api_url, info.api_key, 10)
        finally:
            server.stop(Path(home) / "argilla")

    print("== driver overhead (one demo round, simulated labelers) ==")
    print(
        f"round {ov['round_s']:.1f}s = train {ov['train_s']:.1f}s + generate {ov['generate_s']:.1f}s "
        f"+ wait {ov['wait_s']:.1f}s + driver {ov['driver_s']:.1f}s   per phase: {ov['per_phase_s']}"
    )
    print(f"driver overhead: {ov['overhead_fraction']:.1%} of the round without the wait (target <= 5%)")
    print("== wait-detection latency (last submission -> wait returns) ==")
    h, p = statistics.median(hook), statistics.median(poll)
    print(f"webhooks (poll 30s): median {h:.2f}s {[round(x, 2) for x in hook]}  (target <= 1 s)")
    print(f"polling only (10s):  median {p:.2f}s {[round(x, 2) for x in poll]}")
    print(f"webhooks detect {p / h:.1f}x faster than polling at the default interval")
    print(f"CPU while waiting (webhooks on, 1 s polls): {cpu:.1%} of one core")


if __name__ == "__main__":
    main()
