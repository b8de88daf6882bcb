"""How the CLI shows things: tables and fields for people (rich), the API's JSON for scripts,
progress on stderr (only when stderr is a terminal), confirmations, and formatting of values."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text


class UsageError(Exception):
    """A mistake in the command line (exit status 2)."""


class Aborted(Exception):
    """The user said no (exit status 1)."""


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Any], str]
    justify: str = "left"
    no_wrap: bool = False


def col(header: str, key: str, fmt: Callable[[Any], str] | None = None, *, justify: str = "left",
        no_wrap: bool = False) -> Column:
    """A column showing `row[key]`, formatted by `fmt` (default: `text`)."""
    f = fmt or text
    return Column(header, lambda row: f(row.get(key)), justify, no_wrap)


class Output:
    def __init__(self, fmt: str = "table") -> None:
        self.as_json = fmt == "json"
        terminal = sys.stdout.isatty()
        # Piped tables are not cut to 80 columns: a line per row, whatever its length.
        self.console = Console(highlight=False, soft_wrap=False, width=None if terminal else 10_000,
                               force_terminal=None if terminal else False)
        self.err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 10_000)

    # -- stdout -------------------------------------------------------------------------------
    def document(self, value: Any) -> None:
        """The API's JSON, as it came."""
        if value is not None:
            sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
            sys.stdout.flush()

    def table(self, rows: Sequence[Any], columns: Sequence[Column]) -> None:
        t = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for c in columns:
            t.add_column(c.header, justify=c.justify, no_wrap=c.no_wrap)  # type: ignore[arg-type]
        for row in rows:
            t.add_row(*(Text(c.value(row)) for c in columns))
        self._print(t)

    def fields(self, pairs: Sequence[tuple[str, str]]) -> None:
        """One `name  value` line each."""
        t = Table(box=None, pad_edge=False, show_edge=False, show_header=False)
        t.add_column(style="bold", no_wrap=True)
        t.add_column()
        for name, value in pairs:
            t.add_row(Text(name + ":"), Text(value))
        self._print(t)

    def line(self, message: str = "") -> None:
        self._print(Text(message))

    def _print(self, renderable: Any) -> None:
        if self.console.is_terminal:
            self.console.print(renderable)
            return
        with self.console.capture() as captured:
            self.console.print(renderable)
        sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
        sys.stdout.flush()

    # -- stderr -------------------------------------------------------------------------------
    def note(self, message: str) -> None:
        self.err.print(Text(message))

    @contextmanager
    def spinner(self, message: str) -> Iterator[None]:
        """A spinner while a long request runs (only on a terminal)."""
        if not self.err.is_terminal:
            yield
            return
        with self.err.status(Text(message)):
            yield

    @contextmanager
    def status(self, message: str) -> Iterator[Callable[[str], None]]:
        """A spinner with a line that changes (a run followed as it goes; only on a terminal); yields
        `update(message)`."""
        if not self.err.is_terminal:
            yield lambda message: None
            return
        with self.err.status(Text(message)) as shown:
            yield lambda message: shown.update(Text(message))

    @contextmanager
    def progress(self, message: str, total: int | None = None, in_bytes: bool = False
                 ) -> Iterator[Callable[..., None]]:
        """A progress bar (counting bytes with `in_bytes`); yields `advance(n=1, total=None)`."""
        if not self.err.is_terminal:
            yield lambda n=1, total=None: None
            return
        bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                       DownloadColumn() if in_bytes else MofNCompleteColumn(), TimeElapsedColumn(),
                       console=self.err, transient=True)
        with bar:
            task = bar.add_task(message, total=total)

            def advance(n: int = 1, total: int | None = None) -> None:
                if total is not None:
                    bar.update(task, total=total)
                bar.advance(task, n)

            yield advance

    def confirm(self, action: str, yes: bool, detail: str = "") -> None:
        """Go on if `yes`, or if the user (on a terminal) agrees to `action` ("delete tag a/b:c")."""
        if yes:
            return
        if not sys.stdin.isatty():
            raise UsageError(f"not confirmed: {action} needs --yes when there is no terminal to ask on")
        self.err.print(Text(f"{action[:1].upper()}{action[1:]}{detail}? [y/N] "), end="")
        try:
            answer = sys.stdin.readline()
        except KeyboardInterrupt:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            raise Aborted("aborted: nothing was changed")


# -- values ---------------------------------------------------------------------------------------


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(text(v) for v in value)
    return str(value)


def when(value: Any) -> str:
    """An API time (ISO 8601 UTC) to the second, or `-`."""
    if not value:
        return "-"
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def size(value: Any) -> str:
    if value is None:
        return "-"
    n = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(value)  # pragma: no cover


_MEDIA_TYPES = {
    "application/vnd.oci.image.manifest.v1+json": "oci manifest",
    "application/vnd.oci.image.index.v1+json": "oci index",
    "application/vnd.docker.distribution.manifest.v2+json": "docker manifest",
    "application/vnd.docker.distribution.manifest.list.v2+json": "docker list",
    "application/vnd.docker.distribution.manifest.v1+prettyjws": "docker v1",
}


def media_type(value: Any) -> str:
    return _MEDIA_TYPES.get(str(value), text(value))


_IMAGE_CONFIGS = {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}


def kind(artifact: Any) -> str:
    """What an artifact is: its artifact type if it has one of its own, else its manifest's kind."""
    artifact_type = artifact.get("artifact_type")
    if artifact_type and artifact_type not in _IMAGE_CONFIGS:
        return str(artifact_type)
    return media_type(artifact.get("media_type"))


def platforms(value: Any) -> str:
    out = []
    for p in value or []:
        name = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
        out.append(name + (f"/{p['variant']}" if p.get("variant") else ""))
    return ", ".join(out)


def scan_figures(v: Any) -> str:
    """The artifact list's vulnerability column: `12 (3 fixable) High`, `none`, or `-` (no finished scan)."""
    if not v:
        return "-"
    if not v.get("total"):
        return "none"
    return f"{v['total']} ({v['fixable']} fixable) {v.get('severity') or 'Unknown'}"


def scan_column(artifact: Any) -> str:
    """The guide's states: Not Scanned `-`, Scanning, Stopped, Failed, or the last finished scan's figures."""
    status = artifact.get("scan_status")
    if status is None:
        return ""  # not an image (a signature, a chart...): never scanned
    if status == "Done":
        return scan_figures(artifact.get("vulnerabilities"))
    return "-" if status == "Not Scanned" else str(status)


def signed_column(artifact: Any) -> str:
    """The SIGNED column: unsigned, signed (n signatures, none verified), verified (by the keys' names),
    invalid; `-` for an artifact that is itself a signature or attestation."""
    s = artifact.get("signed")
    if s is None:
        return "-"
    state = str(s.get("state"))
    if state == "signed":
        return f"signed ({s.get('signatures', 0)})"
    if state == "verified":
        names = s.get("key_names") or [str(k)[:19] for k in s.get("keys") or []]
        return f"verified ({', '.join(names)})"
    return state


__all__ = ["Aborted", "Column", "Output", "UsageError", "col", "kind", "media_type", "platforms", "scan_column",
           "scan_figures", "signed_column", "size", "text", "when"]
