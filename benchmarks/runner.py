"""Rounds: every round starts each server fresh, then runs each figure on server A, B, A, B, ... and stops them.

Figures are interleaved at the finest grain (figure 1 on every server, then figure 2 on every server, ...), so
that machine noise within a round hits all servers alike; rounds repeat the whole to give median/min/max.
Figures marked `fresh` (the 8 GiB ones) run on a server restarted on empty storage, and restart it empty again
afterwards, so that at most one server holds their data at a time; a figure marked `cache` as well restarts it as a
pull-through cache of the run's cache source (benchmarks/cache.py). Servers are always stopped and their storage
removed, also on Ctrl-C. Right after every start (and restart), untimed, the runner gets the credentials the
clients will send: a bearer token per repository the figures use, from ncr-trio itself, or for Distribution (token
auth, the default) from the round's token issuer, a small ncr-trio of its own whose signing key Distribution trusts;
with `--distribution-auth none`, Distribution gets anonymous requests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.figures import Data, Figure, ServerRound, repositories
from benchmarks.servers import Running, RunningNcrTrio, ServerKind, remove_tree, start_token_issuer, tree_cpu_seconds


@dataclass(frozen=True)
class Entrant:
    """A server in the comparison; `label` is unique even when a kind is run twice (self-checks)."""

    label: str
    kind: ServerKind


@dataclass
class Outcome:
    """All samples: values[label][metric key] has one entry per round, None where it failed."""

    values: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    details: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def record(self, label: str, key: str, value: float | None) -> None:
        self.values.setdefault(label, {}).setdefault(key, []).append(value)


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (all cores, from /proc/stat), in seconds."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def settle() -> None:
    """Flush dirty pages so that write-back of the last figure's data does not land in the next one."""
    os.sync()


def run_rounds(
    entrants: list[Entrant],
    figures: list[Figure],
    data: Data,
    workdir: Path,
    rounds: int,
    say: Callable[[str], None],
) -> Outcome:
    out = Outcome()
    dropped: set[str] = set()  # servers that could not start: not retried every round
    metric_keys = {f.name: [m.key for m in f.metrics(data.settings)] for f in figures}
    repos = repositories(figures)

    def fail(rnd: int, label: str, figure: str, error: str) -> None:
        out.errors.append({"round": rnd, "server": label, "figure": figure, "error": error})
        say(f"  ! {label} {figure}: {error}")

    for rnd in range(1, rounds + 1):
        say(f"round {rnd}/{rounds}")
        running: dict[str, Running] = {}
        state: dict[str, ServerRound] = {}
        round_dir = workdir / f"round-{rnd}"
        issuer: RunningNcrTrio | None = None  # Distribution's token issuer this round (a new signing key each round)

        def start(e: Entrant, cache_of: str | None = None) -> None:
            nonlocal issuer
            root = round_dir / e.label.replace("#", "-")
            remove_tree(root)
            if e.kind.needs_issuer and issuer is None:
                issuer = start_token_issuer(round_dir / "token-issuer")
            server = e.kind.start(root, issuer, cache_of)
            running[e.label] = server
            state[e.label] = ServerRound(server.url, server.pid, server.access(repos), cache_prefix=e.kind.cache_prefix)

        def restart_fresh(e: Entrant, figure: str, cache_of: str | None = None) -> bool:
            """Stop the server, remove its storage, start it again empty (as a pull-through cache of the registry at
            `cache_of`, if given). False if it would not start."""
            server = running.pop(e.label, None)
            if server is not None:
                server.stop()
            try:
                start(e, cache_of)
                return True
            except Exception as exc:  # noqa: BLE001
                fail(rnd, e.label, figure, f"restart on empty storage failed: {exc} (left out for this round)")
                return False

        try:
            for e in entrants:
                if e.label in dropped:
                    continue
                try:
                    start(e)
                except Exception as exc:  # noqa: BLE001 - any failure to start is reported, not fatal
                    dropped.add(e.label)
                    fail(rnd, e.label, "start", f"{exc} (dropped for the rest of the run)")
            for figure in figures:
                cache_of = data.need_cache_source().url if figure.cache else None
                for e in entrants:
                    if e.label in running and figure.fresh:
                        restart_fresh(e, figure.name, cache_of)
                    if e.label not in running:
                        for key in metric_keys[figure.name]:
                            out.record(e.label, key, None)
                        continue
                    _measure_one(out, rnd, e.label, running[e.label], state[e.label], figure, data,
                                 metric_keys[figure.name], fail, say)
                    if figure.fresh:
                        restart_fresh(e, figure.name)  # free the disk before the next server writes
        finally:
            for label, server in running.items():
                server.stop()
            if issuer is not None:
                issuer.stop()
            remove_tree(round_dir)
    return out


def _measure_one(out: Outcome, rnd: int, label: str, server: Running, state: ServerRound, figure: Figure,
                 data: Data, keys: list[str], fail: Callable[[int, str, str, str], None],
                 say: Callable[[str], None]) -> None:
    def failed(exc: Exception) -> None:
        if not server.alive():
            exc = RuntimeError(f"{exc}; the server died. Log tail:\n{server.log_tail()}")
        fail(rnd, label, figure.name, str(exc))
        for key in keys:
            out.record(label, key, None)

    if figure.prepare is not None:
        try:
            figure.prepare(state, data)  # untimed setup, outside the CPU accounting
        except Exception as exc:  # noqa: BLE001
            failed(exc)
            return
    settle()
    cpu0, busy0, t0 = tree_cpu_seconds(server.pid), machine_busy_seconds(), time.monotonic()
    try:
        sample = figure.measure(state, data)
    except Exception as exc:  # noqa: BLE001 - a failing server must not stop the comparison
        failed(exc)
        return
    wall = time.monotonic() - t0
    server_cpu = tree_cpu_seconds(server.pid) - cpu0
    # what else kept the machine busy meanwhile: this harness (little), other servers (idle), other people's work;
    # not the registry a figure pulls from (the cache figure's source)
    other_cpu = (machine_busy_seconds() - busy0 - server_cpu - float(sample.details.get("client_cpu_seconds", 0.0))
                 - float(sample.details.get("source_cpu_seconds", 0.0)))
    for key in keys:
        out.record(label, key, sample.values.get(key))
    out.details.append({"round": rnd, "server": label, "figure": figure.name, **sample.details,
                        "server_cpu_seconds": round(server_cpu, 3), "other_cpu_seconds": round(max(other_cpu, 0.0), 3),
                        "wall_seconds": round(wall, 3)})
    say(f"  {label:<24} {figure.name:<20} " + "  ".join(f"{k}={v:.1f}" for k, v in sample.values.items()))
