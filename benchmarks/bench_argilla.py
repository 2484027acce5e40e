"""Push and pull speed of a round dataset on the embedded Argilla stack, against the plain SDK.

For each N: push N records x 4 candidates, have an annotator submit a ranking (with ties) for every
record through `/me/responses/bulk` (the UI's bulk endpoint), then read everything back with ranks. pickloop's path
(`rankings.upsert_records`, 500 a request; `rankings.pull_rankings`, 1000 a page) is timed next to
the SDK defaults on an identical dataset in the same run (`dataset.records.log(...)`,
`dataset.records(with_responses=True)`), and the stack's peak RSS is sampled throughout.

    python benchmarks/bench_argilla.py --records 1000 5000
    python benchmarks/bench_argilla.py --records 1000 --api-url http://host:6900 --api-key KEY

Without --api-url it starts its own stack in a temporary home and stops it at the end.
Targets (issue 2): push >= 1000 records/s, pull with ranks >= 5000 records/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import psutil

from argilla_setup import rankings, schema
from argilla_setup.connection import Api, Connection, client
from argilla_setup.schema import SchemaOptions, round_settings
from argilla_setup.users import add_users

K = 4
PUSH_TARGET = 1000.0
PULL_TARGET = 5000.0


@dataclass
class RssSampler:
    """Samples the RSS of the stack's processes (and their children) every `interval` seconds."""

    pids: dict[str, int]
    interval: float = 0.1
    peak: dict[str, int] = field(default_factory=dict)
    peak_total: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _run(self) -> None:
        procs = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                procs[name] = psutil.Process(pid)
        while not self._stop.is_set():
            total = 0
            for name, proc in procs.items():
                try:
                    rss = proc.memory_info().rss + sum(
                        c.memory_info().rss for c in proc.children(recursive=True)
                    )
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak.get(name, 0), rss)
                total += rss
            self.peak_total = max(self.peak_total, total)
            self._stop.wait(self.interval)


def faq_texts() -> list[tuple[str, str]]:
    path = resources.files("loop") / "data" / "python_faq.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["question"], r["answer"]) for r in rows]


def make_records(n: int, run: str) -> list[dict]:
    """N records in the REST shape, with realistic text (FAQ answers) and the round metadata."""
    faq = faq_texts()
    out = []
    for i in range(n):
        q, _ = faq[i % len(faq)]
        meta = {
            schema.META_ROUND: 1,
            schema.META_SOURCE: "faq",
            schema.META_EXAMPLE_ID: f"ex-{i}",
            schema.META_TURN: 0,
        }
        fields = {schema.QUESTION_FIELD: q}
        for s in range(1, K + 1):
            fields[schema.slot_name(s)] = faq[(i + 7 * s) % len(faq)][1][:600]
        out.append(
            {"external_id": schema.record_external_id(run, 1, f"ex-{i}"), "fields": fields, "metadata": meta}
        )
    return out


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def create_dataset(sdk, name: str, workspace: str):
    import argilla as rg

    ds = rg.Dataset(
        name=name, workspace=workspace, settings=round_settings(1, K, SchemaOptions()), client=sdk
    )
    ds.create()
    return ds


def record_ids(owner: Api, dataset_id: str) -> list[str]:
    return [r.id for r in rankings.iter_rankings(owner, dataset_id)]


def submit_all(annotator: Api, ids: list[str]) -> int:
    order = ["candidate_2", ["candidate_1", "candidate_3"], "candidate_4"]  # a tie in every ranking
    values = rankings.response_values(order, none_acceptable=False)
    return rankings.submit_responses(annotator, [(rid, values, "submitted") for rid in ids])


def bench_one(n: int, owner: Api, sdk, annotator: Api, workspace: str) -> dict:
    import argilla as rg

    tag = uuid.uuid4().hex[:6]
    records = make_records(n, f"bench{tag}")

    fast = create_dataset(sdk, f"bench-{n}-fast-{tag}", workspace)
    push_s, _ = timed(lambda: rankings.upsert_records(owner, str(fast.id), records))

    plain = create_dataset(sdk, f"bench-{n}-sdk-{tag}", workspace)
    sdk_records = [
        rg.Record(id=r["external_id"], fields=r["fields"], metadata=r["metadata"]) for r in records
    ]
    sdk_push_s, _ = timed(lambda: plain.records.log(sdk_records))

    plain_ids = record_ids(owner, str(plain.id))
    assert len(plain_ids) == n, len(plain_ids)
    fast_ids = record_ids(owner, str(fast.id))
    respond_s, _ = timed(lambda: submit_all(annotator, fast_ids))

    # Both readers read the same dataset, so the comparison is like for like.
    pull_s, pulled = timed(lambda: rankings.pull_rankings(owner, str(fast.id)))
    assert len(pulled) == n
    expected = (("candidate_2", 1), ("candidate_1", 2), ("candidate_3", 2), ("candidate_4", 3))
    assert all(r.responses and r.responses[0].ranking == expected for r in pulled), "ranks lost"

    std_pull_s, std_pulled = timed(lambda: rankings.pull_rankings(owner, str(fast.id), fast=False))
    assert std_pulled == pulled

    sdk_pull_s, sdk_pulled = timed(lambda: list(fast.records(with_responses=True)))
    assert len(sdk_pulled) == n

    return {
        "records": n,
        "push_rps": n / push_s,
        "sdk_push_rps": n / sdk_push_s,
        "respond_rps": n / respond_s,
        "pull_rps": n / pull_s,
        "std_pull_rps": n / std_pull_s,
        "sdk_pull_rps": n / sdk_pull_s,
    }


def stack_pids(home: Path) -> dict[str, int]:
    pids = {}
    for component in ("server", "worker", "redis"):
        with contextlib.suppress(OSError, ValueError):
            pids[component] = int((home / "run" / f"{component}.pid").read_text().strip())
    return pids


def report(rows: list[dict], sampler: RssSampler | None, fast_route: str | None) -> None:
    print()
    print(
        f"{'records':>8} | {'push/s':>7} {'SDK':>6} {'ratio':>6} | {'pull/s':>7} {'SDK':>6} {'ratio':>6}"
        f" {'argilla listing':>16} | {'responses/s':>11}"
    )
    for r in rows:
        print(
            f"{r['records']:>8} | {r['push_rps']:>7.0f} {r['sdk_push_rps']:>6.0f} "
            f"{r['push_rps'] / r['sdk_push_rps']:>5.1f}x | {r['pull_rps']:>7.0f} {r['sdk_pull_rps']:>6.0f} "
            f"{r['pull_rps'] / r['sdk_pull_rps']:>5.1f}x {r['std_pull_rps']:>16.0f} | {r['respond_rps']:>11.0f}"
        )
    print(
        "pull path: "
        + (f"the embedded server's fast route {fast_route}" if fast_route else "argilla's record listing")
        + "; 'argilla listing' = the same read through GET /records?include=responses"
    )
    for r in rows:
        push_ok = "ok" if r["push_rps"] >= PUSH_TARGET else "BELOW TARGET"
        pull_ok = "ok" if r["pull_rps"] >= PULL_TARGET else "BELOW TARGET"
        print(
            f"N={r['records']}: push {r['push_rps']:.0f}/s (target {PUSH_TARGET:.0f}: {push_ok}), "
            f"pull with ranks {r['pull_rps']:.0f}/s (target {PULL_TARGET:.0f}: {pull_ok})"
        )
    if sampler is not None:
        parts = ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in sampler.peak.items())
        print(f"peak RSS of the stack: {sampler.peak_total / 2**20:.0f} MiB in total ({parts})")
    else:
        print("peak RSS: not measured (remote deployment)")
    load = ", ".join(f"{x:.1f}" for x in psutil.getloadavg())
    print(f"machine: {psutil.cpu_count()} CPUs, load average {load} (other work shares these CPUs)")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[1000, 5000], help="record counts to run")
    parser.add_argument("--api-url", default=None, help="use a running server instead of starting one")
    parser.add_argument("--api-key", default=None, help="owner API key for --api-url")
    parser.add_argument("--home", type=Path, default=None, help="embedded stack home (default: a temp dir)")
    args = parser.parse_args(argv)

    started_home: Path | None = None
    tmp = None
    if args.api_url:
        conn = Connection(args.api_url, args.api_key or "")
        home = args.home
    else:
        from argilla_setup import server

        if args.home is None:
            tmp = tempfile.TemporaryDirectory(prefix="pickloop-bench-")
            home = Path(tmp.name)
        else:
            home = args.home
        t0 = time.perf_counter()
        info = server.start(home, port=server.free_port())
        started_home = None if info.already_running else home
        print(f"stack up at {info.api_url} in {time.perf_counter() - t0:.1f}s (home {home})")
        conn = Connection(info.api_url, info.api_key)

    sampler = RssSampler(stack_pids(home)).start() if home is not None and not args.api_url else None
    rows = []
    fast_route = None
    try:
        with Api(conn) as owner:
            sdk = client(conn)
            workspace = f"bench-{uuid.uuid4().hex[:6]}"
            users_home = Path(tempfile.mkdtemp(prefix="pickloop-bench-users-"))
            (labeler,) = add_users(
                owner,
                [f"labeler-{uuid.uuid4().hex[:6]}"],
                workspace=workspace,
                create_workspace=True,
                home=users_home,
            )
            creds = json.loads(labeler.credentials_file.read_text())
            fast_route = rankings.fast_listing(owner)
            with Api(Connection(conn.api_url, creds["api_key"])) as annotator:
                for n in args.records:
                    print(f"running N={n} ...", flush=True)
                    rows.append(bench_one(n, owner, sdk, annotator, workspace))
    finally:
        if sampler is not None:
            sampler.stop()
        if started_home is not None:
            from argilla_setup import server

            server.stop(started_home)
        if tmp is not None:
            tmp.cleanup()
    report(rows, sampler, fast_route)
    return rows


if __name__ == "__main__":
    main()
