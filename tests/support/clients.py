"""Helpers for the real-client tests: isolated client environments, offline test content, OCI layouts.

Everything here is built locally and deterministically (fixed mtimes, gzip without timestamps), so no
test ever needs the internet, and the same inputs always give the same digests.
"""

from __future__ import annotations

import atexit
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.auth import BearerAuth
from tests.support.oci import Image
from tests.support.server import TOOLS_BIN, Server

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

def find_tool(name: str) -> str | None:
    """Path of a client: the pinned cache first (tests.support.server.tool's order), then PATH."""
    cached = TOOLS_BIN / name
    if cached.exists():
        return str(cached)
    return shutil.which(name)


def random_bytes(n: int, seed: str) -> bytes:
    """`n` deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(n)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- running clients ------------------------------------------------------------------------------


def clients_watching(server: Server, root: Path, *, logged_in: bool = True) -> Iterator[Clients]:
    """For a fixture: a `Clients` home under `root`; afterwards, the server must not have logged an
    error or a traceback meanwhile (a client that retried its way past a 500 would hide a bug)."""
    start = len(server.log())
    yield Clients(root, server, logged_in=logged_in)
    logged = server.log()[start:]
    problems = [line for line in logged.splitlines() if " ERROR " in line or "Traceback" in line]
    assert not problems, f"the server logged errors during the test:\n{logged[-5000:]}"



class ClientError(AssertionError):
    """A client exited non-zero: the message carries its command line, output and the server log tail."""


@dataclass
class Clients:
    """An isolated home for every client: HOME, XDG dirs, docker/containers/helm config, all under `root`.

    `run` executes a client with that environment and fails with everything needed to debug it
    (command, exit code, stdout, stderr, and the tail of the server's log).
    """

    root: Path
    server: Server
    env: dict[str, str] = field(default_factory=dict)
    # Start with the admin's credentials stored where every client looks (docker's config.json and
    # containers' auth.json), as after a `docker login`; False: start logged out.
    logged_in: bool = True

    def __post_init__(self) -> None:
        home = self.root / "home"
        dirs = {
            "HOME": home,
            "XDG_CONFIG_HOME": home / ".config",
            "XDG_DATA_HOME": home / ".local/share",
            "XDG_CACHE_HOME": home / ".cache",
            "XDG_STATE_HOME": home / ".local/state",
            "XDG_RUNTIME_DIR": self.root / "run",
            "DOCKER_CONFIG": home / ".docker",
            "HELM_CONFIG_HOME": home / ".config/helm",
            "HELM_CACHE_HOME": home / ".cache/helm",
            "HELM_DATA_HOME": home / ".local/share/helm",
            "TMPDIR": self.root / "tmp",
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        (self.root / "run").chmod(0o700)
        auth = home / ".config/containers/auth.json"
        auth.parent.mkdir(parents=True, exist_ok=True)
        auth.write_text('{"auths": {}}\n')
        # containers/image (skopeo, podman): no system registries.conf or policy surprises.
        registries = home / ".config/containers/registries.conf"
        registries.write_text('unqualified-search-registries = []\nshort-name-mode = "disabled"\n')
        policy = home / ".config/containers/policy.json"
        policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
        # podman as root would otherwise read /etc/containers/{storage,containers}.conf.
        storage_conf = home / ".config/containers/storage.conf"
        storage_conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{self.root / "storage"}"\n'
                                f'runroot = "{self.root / "runroot"}"\n')
        containers_conf = home / ".config/containers/containers.conf"
        containers_conf.write_text('[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
        if self.logged_in:
            self.store_credentials(*self.server.admin)
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TERM", "USER", "LOGNAME")}
        self.env = {
            **keep,
            **{k: str(v) for k, v in dirs.items()},
            "REGISTRY_AUTH_FILE": str(auth),
            "HELM_REGISTRY_CONFIG": str(home / ".docker/config.json"),
            "CONTAINERS_REGISTRIES_CONF": str(registries),
            "CONTAINERS_STORAGE_CONF": str(storage_conf),
            "CONTAINERS_CONF": str(containers_conf),
            "NO_PROXY": "*",
            "no_proxy": "*",
            **self.env,
        }

    def store_credentials(self, username: str, password: str) -> None:
        """What `docker login` stores, in docker's config.json and containers' auth.json."""
        import base64

        home = self.root / "home"
        entry = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
        for path in (home / ".docker/config.json", home / ".config/containers/auth.json"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"auths": {self.server.host: entry}}) + "\n")

    def path(self, name: str) -> Path:
        return self.root / name

    def run(self, *cmd: str | Path, check: bool = True, timeout: float = 120, input: str | None = None,
            env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        args = [str(c) for c in cmd]
        exe = find_tool(args[0])
        if exe is None:
            raise ClientError(f"{args[0]} is not installed")
        args[0] = exe
        proc = subprocess.run(args, env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout, input=input, cwd=cwd or self.root)
        if check and proc.returncode != 0:
            raise ClientError(self.describe(proc))
        return proc

    def describe(self, proc: subprocess.CompletedProcess[str]) -> str:
        return (f"$ {' '.join(proc.args)}\nexit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
                f"--- stderr\n{proc.stderr[-4000:]}\n--- server log (tail)\n{self.server.log()[-3000:]}")

    def json(self, *cmd: str | Path, **kw: Any) -> Any:
        return json.loads(self.run(*cmd, **kw).stdout)


# -- test content -----------------------------------------------------------------------------------


def tar_layer(files: dict[str, bytes], mode: int = 0o644) -> bytes:
    """A deterministic, uncompressed tar of `files` (paths relative to /, parents created as dirs)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen: set[str] = set()
        for name in sorted(files):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), mode, 0
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def make_image(label: str, arch: str = "amd64", os_name: str = "linux", n_layers: int = 1,
               extra_file_bytes: int = 0) -> Image:
    """A tiny OCI image: `n_layers` gzip layers with distinct content, and a config whose diff_ids match."""
    layers_tar = []
    for i in range(n_layers):
        files = {
            f"etc/ncr-test/{label}-{i}.txt": f"{label} layer {i} {os_name}/{arch}\n".encode(),
            "etc/os-release": b'NAME="ncr-test"\nID=ncr-test\n',
        }
        if extra_file_bytes:
            # Incompressible filler so layers are not trivially tiny (seeded: same input, same digest).
            files[f"opt/{label}-{i}.bin"] = random_bytes(extra_file_bytes, f"{label}/{i}/{arch}")
        layers_tar.append(tar_layer(files))
    layers = [gzip_bytes(t) for t in layers_tar]
    config_doc = {
        "architecture": arch,
        "os": os_name,
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/true"], "Labels": {"ncr.test": label}},
        "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in layers_tar]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"ncr-test {label} {i}"}
                    for i in range(n_layers)],
    }
    config = json.dumps(config_doc, sort_keys=True, separators=(",", ":")).encode()
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(b), "size": len(b)} for b in layers],
        "annotations": {"org.opencontainers.image.title": label},
    }
    manifest = json.dumps(manifest_doc, indent=2).encode()
    return Image(config, layers, manifest)


def make_index(images: list[Image]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": img.digest, "size": len(img.manifest),
             "platform": {"architecture": json.loads(img.config)["architecture"],
                          "os": json.loads(img.config)["os"]}}
            for img in images
        ],
    }
    return json.dumps(doc, indent=2).encode()


# -- OCI image layouts ------------------------------------------------------------------------------


def write_blob(layout: Path, data: bytes) -> str:
    digest = sha256(data)
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def write_layout(layout: Path, tag: str, images: list[Image], index: bytes | None = None) -> str:
    """An OCI image layout with one tagged entry: a single image, or `index` over `images`.

    Returns the digest of the tagged manifest (the index's when there is one).
    """
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    for img in images:
        for blob in [img.config, *img.layers, img.manifest]:
            write_blob(layout, blob)
    top = index if index is not None else images[0].manifest
    assert index is not None or len(images) == 1
    digest = write_blob(layout, top)
    entry = {"mediaType": OCI_INDEX if index is not None else OCI_MANIFEST, "digest": digest, "size": len(top),
             "annotations": {"org.opencontainers.image.ref.name": tag}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return digest


def read_layout_blob(layout: Path, digest: str) -> bytes:
    algorithm, encoded = digest.split(":", 1)
    return (layout / "blobs" / algorithm / encoded).read_bytes()


def layout_entry(layout: Path, tag: str) -> dict[str, Any]:
    """The descriptor that index.json gives `tag`."""
    index = json.loads((layout / "index.json").read_text())
    for d in index["manifests"]:
        if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return dict(d)
    raise KeyError(f"{tag} not in {layout}/index.json: {index}")


def layout_blobs(layout: Path) -> dict[str, bytes]:
    """Every blob of a layout, by digest, checking each file's name is its content's digest."""
    out: dict[str, bytes] = {}
    for path in sorted((layout / "blobs" / "sha256").iterdir()):
        data = path.read_bytes()
        assert sha256(data) == f"sha256:{path.name}", f"corrupt blob {path}"
        out[f"sha256:{path.name}"] = data
    return out


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    """A plain tar file on disk (e.g. a layer for `crane append -f`)."""
    path.write_bytes(tar_layer(files))
    return path


# -- the registry's own view, over plain HTTP -------------------------------------------------------


_http: httpx.Client | None = None


def http() -> httpx.Client:
    """One plain-HTTP client for the whole session (building one per call costs ~30 ms of TLS setup)."""
    global _http
    if _http is None:
        _http = httpx.Client(timeout=10.0, verify=False, trust_env=False)
        atexit.register(_http.close)
    return _http


_auths: dict[tuple[str, str], BearerAuth] = {}


def admin_auth(server: Server) -> BearerAuth:
    """The admin's token auth for `server`: one per server, so its tokens are reused across calls."""
    key = (server.url, server.admin_password)
    if key not in _auths:
        _auths[key] = server.auth()
    return _auths[key]


def registry_get(server: Server, path: str, accept: str | None = None,
                 params: dict[str, str] | None = None) -> httpx.Response:
    """GET `path` (e.g. "/v2/repo/tags/list") from the server directly (as the admin), to check what
    clients report."""
    headers = {"Accept": accept} if accept else {}
    return http().get(server.url + path, headers=headers, params=params, auth=admin_auth(server))


def put_manifest(server: Server, repo: str, reference: str, content: bytes, media_type: str = OCI_MANIFEST) -> str:
    """PUT a manifest straight over HTTP (e.g. many tags quickly); returns its digest."""
    r = http().put(f"{server.url}/v2/{repo}/manifests/{reference}", content=content,
                   headers={"Content-Type": media_type}, auth=admin_auth(server))
    assert r.status_code == 201, f"PUT manifest {repo}:{reference}: {r.status_code} {r.text[:500]}"
    return r.headers["docker-content-digest"]


def registry_json(server: Server, path: str, accept: str | None = None, params: dict[str, str] | None = None) -> Any:
    r = registry_get(server, path, accept, params)
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:500]}"
    return r.json()


def tags(server: Server, repo: str) -> list[str]:
    return sorted(registry_json(server, f"/v2/{repo}/tags/list")["tags"] or [])


def referrers(server: Server, repo: str, digest: str, artifact_type: str | None = None) -> list[dict[str, Any]]:
    params = {"artifactType": artifact_type} if artifact_type else None
    return list(registry_json(server, f"/v2/{repo}/referrers/{digest}", params=params)["manifests"])


def manifest_bytes(server: Server, repo: str, reference: str) -> bytes:
    accept = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
    r = registry_get(server, f"/v2/{repo}/manifests/{reference}", accept)
    assert r.status_code == 200, f"GET manifest {repo}:{reference}: {r.status_code} {r.text[:500]}"
    return r.content


def blob_bytes(server: Server, repo: str, digest: str) -> bytes:
    r = registry_get(server, f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200, f"GET blob {repo}@{digest}: {r.status_code} {r.text[:500]}"
    assert sha256(r.content) == digest
    return r.content


__all__ = [
    "clients_watching",
    "Clients",
    "ClientError",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "Image",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_MANIFEST",
    "admin_auth",
    "blob_bytes",
    "find_tool",
    "gzip_bytes",
    "layout_blobs",
    "layout_entry",
    "make_image",
    "make_index",
    "http",
    "manifest_bytes",
    "put_manifest",
    "random_bytes",
    "read_layout_blob",
    "referrers",
    "registry_get",
    "registry_json",
    "sha256",
    "tags",
    "tar_layer",
    "write_blob",
    "write_layout",
    "write_tar",
]
