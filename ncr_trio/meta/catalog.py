"""Read-side queries for the management API: images (repositories) of a registry, their artifacts
with sizes, tags and times, and tag listings. Writes stay in `store.py`, next to their events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ncr_trio.meta.accessories import Accessory, direct_accessories, is_accessory_sql
from ncr_trio.meta.db import Database, Tx


@dataclass(frozen=True)
class ImageSummary:
    repository: str
    artifacts: int
    tags: int
    size: int
    pushed_at: float | None
    pulled_at: float | None


@dataclass(frozen=True)
class ArtifactSummary:
    digest: str
    media_type: str
    artifact_type: str | None
    subject: str | None
    size: int  # the manifest, its blobs and its child manifests (with theirs)
    platforms: tuple[dict[str, str], ...]
    tags: tuple[str, ...]
    pushed_at: float
    pulled_at: float | None
    accessories: tuple[Accessory, ...] = ()  # its signatures, attestations, SBOMs, referrers


@dataclass(frozen=True)
class TagRow:
    name: str
    repository: str
    digest: str
    updated_at: float


def _under(tx: Tx, column: str) -> str:
    """`column` names something under "prefix/" (bound as two parameters: "prefix/", "prefix0")."""
    c = tx.dialect.collate
    return f"{column}{c} >= ? AND {column}{c} < ?"


_IMAGE_COLUMNS = (
    "SELECT r.name, "
    f"(SELECT COUNT(*) FROM manifests m WHERE m.repo_id = r.id AND NOT {is_accessory_sql()}), "
    "(SELECT COUNT(*) FROM tags t WHERE t.repo_id = r.id), "
    "(SELECT COALESCE(SUM(b.size), 0) FROM repo_blobs l JOIN blobs b ON b.digest = l.digest WHERE l.repo_id = r.id) "
    "+ (SELECT COALESCE(SUM(m.size), 0) FROM manifests m WHERE m.repo_id = r.id), "
    "(SELECT MAX(m.created_at) FROM manifests m WHERE m.repo_id = r.id), "
    "(SELECT MAX(m.pulled_at) FROM manifests m WHERE m.repo_id = r.id) "
    "FROM repositories r "
)
_HAS_MANIFEST = "EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)"


def _image(row: tuple[object, ...]) -> ImageSummary:
    def num(v: object) -> float | None:
        return None if v is None else float(v)  # type: ignore[arg-type]

    return ImageSummary(str(row[0]), int(row[1]), int(row[2]), int(row[3]),  # type: ignore[call-overload]
                        num(row[4]), num(row[5]))


def _platforms(media_type: str, content: bytes) -> tuple[dict[str, str], ...]:
    if not media_type.endswith(("index.v1+json", "list.v2+json")):
        return ()
    try:
        doc = json.loads(content)
        out = []
        for child in doc.get("manifests", []):
            p = child.get("platform")
            if isinstance(p, dict) and isinstance(p.get("os"), str) and isinstance(p.get("architecture"), str):
                entry = {"os": p["os"], "architecture": p["architecture"]}
                if isinstance(p.get("variant"), str):
                    entry["variant"] = p["variant"]
                out.append(entry)
        return tuple(out)
    except (ValueError, AttributeError, TypeError):
        return ()


class CatalogQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def images(self, registry: str, contains: str | None, limit: int, offset: int
                     ) -> tuple[list[ImageSummary], int]:
        def run(tx: Tx) -> tuple[list[ImageSummary], int]:
            where = f"WHERE {_under(tx, 'r.name')} AND {_HAS_MANIFEST}"
            params: list[object] = [registry + "/", registry + "0"]
            if contains:
                where += f" AND {tx.dialect.instr}(substr(r.name, ?), ?) > 0"  # in the image's own name
                params += [len(registry) + 2, contains]
            total = tx.one(f"SELECT COUNT(*) FROM repositories r {where}", params)
            rows = tx.all(_IMAGE_COLUMNS + where + f" ORDER BY r.name{tx.dialect.collate} LIMIT ? OFFSET ?",
                          [*params, limit, offset])
            return [_image(r) for r in rows], int(total[0]) if total else 0

        return await self.db.read(run)

    async def image(self, repository: str) -> ImageSummary | None:
        row = await self.db.read(lambda tx: tx.one(_IMAGE_COLUMNS + f"WHERE r.name = ? AND {_HAS_MANIFEST}",
                                                   (repository,)))
        return None if row is None else _image(row)

    async def artifacts(self, repository: str, limit: int, offset: int, digest: str | None = None
                        ) -> tuple[list[ArtifactSummary], int] | None:
        """A page of a repository's artifacts, newest push first, without accessories (each artifact lists
        its own: meta/accessories.py); or the one `digest`, accessory or not."""

        def run(tx: Tx) -> tuple[list[ArtifactSummary], int] | None:
            repo = tx.one("SELECT id FROM repositories WHERE name = ?", (repository,))
            if repo is None:
                return None
            repo_id = int(repo[0])
            where, params = "WHERE m.repo_id = ?", [repo_id]
            if digest is not None:
                where += " AND m.digest = ?"
                params.append(digest)  # type: ignore[arg-type]
            else:
                where += f" AND NOT {is_accessory_sql()}"
            total = tx.one(f"SELECT COUNT(*) FROM manifests m {where}", params)
            rows = tx.all("SELECT m.digest, m.media_type, m.artifact_type, m.subject, m.size, m.created_at, "
                          f"m.pulled_at, m.content FROM manifests m {where} ORDER BY m.created_at DESC, m.digest "
                          "LIMIT ? OFFSET ?", [*params, limit, offset])
            if not rows:
                return [], int(total[0]) if total else 0
            digests = [r[0] for r in rows]
            marks = ",".join("?" * len(digests))
            blob_sizes: dict[str, int] = {}
            children: dict[str, list[str]] = {}
            for parent, child, kind, size in tx.all(
                    "SELECT x.parent, x.child, x.kind, COALESCE(b.size, m.size, 0) FROM manifest_refs x "
                    "LEFT JOIN blobs b ON x.kind = 'blob' AND b.digest = x.child "
                    "LEFT JOIN manifests m ON x.kind = 'manifest' AND m.repo_id = x.repo_id AND m.digest = x.child "
                    f"WHERE x.repo_id = ? AND x.parent IN ({marks})", [repo_id, *digests]):
                if kind == "blob":
                    blob_sizes[parent] = blob_sizes.get(parent, 0) + int(size)
                else:
                    children.setdefault(parent, []).append(child)
                    blob_sizes[parent] = blob_sizes.get(parent, 0) + int(size)
            child_list = sorted({c for cs in children.values() for c in cs})
            if child_list:  # an index counts its children's blobs too
                child_marks = ",".join("?" * len(child_list))
                child_blobs = {str(p): int(s) for p, s in tx.all(
                    "SELECT x.parent, COALESCE(SUM(b.size), 0) FROM manifest_refs x JOIN blobs b ON b.digest = x.child "
                    f"WHERE x.repo_id = ? AND x.kind = 'blob' AND x.parent IN ({child_marks}) GROUP BY x.parent",
                    [repo_id, *child_list])}
                for parent, cs in children.items():
                    blob_sizes[parent] += sum(child_blobs.get(c, 0) for c in cs)
            tags: dict[str, list[str]] = {}
            c = tx.dialect.collate
            for name, target in tx.all(f"SELECT name, digest FROM tags WHERE repo_id = ? AND digest IN ({marks}) "
                                       f"ORDER BY name{c}", [repo_id, *digests]):
                tags.setdefault(target, []).append(name)
            accessories = direct_accessories(tx, repo_id, digests)
            out = [ArtifactSummary(
                digest=r[0], media_type=r[1], artifact_type=r[2], subject=r[3],
                size=int(r[4]) + blob_sizes.get(r[0], 0), platforms=_platforms(r[1], bytes(r[7])),
                tags=tuple(tags.get(r[0], ())), pushed_at=float(r[5]),
                pulled_at=None if r[6] is None else float(r[6]),
                accessories=tuple(accessories.get(r[0], ()))) for r in rows]
            return out, int(total[0]) if total else 0

        return await self.db.read(run)

    async def tags(self, repository: str | None, registry: str | None, contains: str | None) -> list[TagRow]:
        """Tags of one repository, or of every repository of a registry, by repository and name."""

        def run(tx: Tx) -> list[TagRow]:
            c = tx.dialect.collate
            sql = ("SELECT t.name, r.name, t.digest, t.updated_at FROM tags t JOIN repositories r ON r.id = t.repo_id ")
            params: list[object] = []
            if repository is not None:
                sql += "WHERE r.name = ?"
                params.append(repository)
            else:
                assert registry is not None
                sql += f"WHERE {_under(tx, 'r.name')}"
                params += [registry + "/", registry + "0"]
            if contains:
                sql += f" AND {tx.dialect.instr}(t.name, ?) > 0"
                params.append(contains)
            sql += f" ORDER BY r.name{c}, t.name{c}"
            return [TagRow(r[0], r[1], r[2], float(r[3])) for r in tx.all(sql, params)]

        return await self.db.read(run)

    async def gc_runs(self, limit: int, offset: int) -> tuple[list[tuple[object, ...]], int]:
        def run(tx: Tx) -> tuple[list[tuple[object, ...]], int]:
            total = tx.one("SELECT COUNT(*) FROM gc_runs")
            rows = tx.all("SELECT id, dry_run, started_at, finished_at, blobs_removed, manifests_removed, "
                          "uploads_removed, bytes_freed FROM gc_runs ORDER BY id DESC LIMIT ? OFFSET ?",
                          (limit, offset))
            return rows, int(total[0]) if total else 0

        return await self.db.read(run)

    async def gc_items(self, run_id: int) -> dict[str, list[str]]:
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT kind, item FROM gc_run_items WHERE run_id = ? ORDER BY kind, item", (run_id,)))
        out: dict[str, list[str]] = {}
        for kind, item in rows:
            out.setdefault(kind, []).append(item)
        return out


__all__ = ["ArtifactSummary", "CatalogQueries", "ImageSummary", "TagRow"]
