"""Which images and tags a replication policy selects: the guide's filters, through the one
linear-time matcher (ncr_trio/patterns.py). The image filter applies to an image's path without its
registry (`my/hello-world` of `team/my/hello-world`); the tag filter either selects the tags it matches
("match") or keeps them back ("exclude"). An empty filter selects everything."""

from __future__ import annotations

from dataclasses import dataclass

from ncr_trio.patterns import Glob, InvalidPattern, compile_pattern
from ncr_trio.replication.model import TAG_FILTER_MODES, Policy


@dataclass(frozen=True)
class Filters:
    image: Glob | None
    tag: Glob | None
    exclude: bool  # the tag filter keeps back what it matches

    @classmethod
    def of(cls, policy: Policy) -> Filters:
        return cls.parse(policy.name_filter, policy.tag_filter, policy.tag_filter_mode)

    @classmethod
    def parse(cls, name_filter: str, tag_filter: str, mode: str = "match") -> Filters:
        """The filters (InvalidPattern: a pattern the matcher refuses; ValueError: an unknown mode)."""
        if mode not in TAG_FILTER_MODES:
            raise ValueError(f"tag_filter_mode must be one of {', '.join(TAG_FILTER_MODES)}")
        return cls(compile_pattern(name_filter) if name_filter else None,
                   compile_pattern(tag_filter) if tag_filter else None, mode == "exclude")

    def selects_image(self, path: str) -> bool:
        return self.image is None or self.image(path)

    def selects_tag(self, tag: str) -> bool:
        if self.tag is None:
            return True
        return self.tag(tag) != self.exclude


__all__ = ["Filters", "InvalidPattern"]
