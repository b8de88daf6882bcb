"""Read an ncr-trio server's `/metrics` as Prometheus does: the text format, parsed by prometheus-client."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Samples:
    """One scrape: every sample's value by its name and labels."""

    values: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def get(self, name: str, **labels: str) -> float:
        """The sample `name` with exactly these labels (0 when the scrape has none: a labelled series
        appears on its first use)."""
        return self.values.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples `name` whose labels include these (over every other label)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.values.items() if n == name and wanted <= ls)


def scrape(url: str, auth: tuple[str, str] | None = None) -> Samples:
    """GET `url`/metrics and parse it (raises on any answer but 200, and on anything the parser refuses)."""
    r = httpx.get(f"{url}/metrics", auth=auth, timeout=30)
    r.raise_for_status()
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    values = {(s.name, frozenset(s.labels.items())): s.value
              for family in text_string_to_metric_families(r.text) for s in family.samples}
    return Samples(values)


__all__ = ["Samples", "scrape"]
