"""Start real ncr-trio (and CNCF Distribution) servers for tests, as subprocesses on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ncr_trio.client import Client
from tests.support.auth import BearerAuth

ADMIN_USER = "admin"
ADMIN_PASSWORD = "test-admin-password-0"
# Registries every test server has (the first path component of the repositories tests use).
DEFAULT_REGISTRIES = ("a", "big", "clients", "conformance", "dl", "durable", "errors", "expiry", "gc", "graceful",
                      "multi", "repo", "workers")



TOOLS_BIN = Path(os.environ.get("NCR_TOOLS", Path.home() / ".cache/ncr-trio/tools")) / "bin"


def tool(name: str) -> str:
    """Path of an external tool: the pinned cache first, then PATH."""
    cached = TOOLS_BIN / name
    if cached.exists():
        return str(cached)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: run `make tools`")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0,
               verify: bool | ssl.SSLContext = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            r = httpx.get(url + "/v2/", timeout=1.0, verify=verify)
            if r.status_code in (200, 401):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server at {url} not ready after {timeout}s")


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """End a helper process: SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _OnLoopback:
    """A server process on 127.0.0.1; `host` is what clients take as the registry ("127.0.0.1:PORT")."""

    port: int

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"


@dataclass
class Server(_OnLoopback):
    """One ncr-trio server process; `host` is what clients take as the registry ("127.0.0.1:PORT")."""

    data: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    registries: tuple[str, ...] = DEFAULT_REGISTRIES
    admin_password: str = ADMIN_PASSWORD
    # HTTPS: (certificate chain PEM, key PEM, CA PEM that clients trust).
    tls: tuple[Path, Path, Path] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def verify(self) -> bool | ssl.SSLContext:
        """What httpx needs to trust this server (its CA, with HTTPS)."""
        return ssl.create_default_context(cafile=str(self.tls[2])) if self.tls else True

    @property
    def admin(self) -> tuple[str, str]:
        return ADMIN_USER, self.admin_password

    def api(self, username: str | None = None, password: str | None = None) -> Client:
        """The management API (`api.call("api.images", registry=...)`), as the admin unless told otherwise."""
        secret = password if password is not None else self.admin_password
        return Client(self.url, username or ADMIN_USER, secret, cacert=str(self.tls[2]) if self.tls else None)

    def new_user(self, name: str, roles: Mapping[str, str] | None = None, password: str | None = None,
                 key: str = "test key") -> dict[str, Any]:
        """A user the admin makes, with `roles` (registry -> role); an access key of theirs (with its secret)."""
        api = self.api()
        api.call("api.user.create", {"name": name, "password": password})
        for registry, role in (roles or {}).items():
            api.call("api.role.set", {"role": role}, user=name, on=registry)
        return api.doc("api.key.create", {"description": key}, user=name)

    def auth(self, username: str | None = None, password: str | None = None, actions: str = "pull,push,delete"
             ) -> BearerAuth:
        return BearerAuth(self.url, username or ADMIN_USER,
                          password if password is not None else self.admin_password, actions, verify=self.verify)

    def client(self, *, auth: httpx.Auth | None = None, **kwargs: object) -> httpx.Client:
        """An httpx client of the registry API, logged in as the admin (token auth) by default."""
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("verify", self.verify)
        return httpx.Client(base_url=self.url, auth=auth or self.auth(), **kwargs)  # type: ignore[arg-type]

    def call(self, method: str, path: str, auth: tuple[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """One request to the management API (`/api/v1` + path), with Basic auth, the admin's by default."""
        kwargs.setdefault("timeout", 60)
        kwargs.setdefault("verify", self.verify)
        return httpx.request(method, f"{self.url}/api/v1{path}", auth=auth or self.admin, **kwargs)

    def ensure_registries(self, *names: str) -> None:
        existing = {r.name for r in self.api().call("api.registries").registries}
        for name in names:
            if name not in existing:
                self.api().call("api.registry.create", {"name": name})

    def start(self) -> Server:
        self.data.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data.parent / f"server-{self.port}.log"
        cmd = [sys.executable, "-m", "ncr_trio", "serve", "--listen", self.host, "--data", str(self.data), *self.extra_args]
        if self.tls:
            cmd += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        # Every test client shares 127.0.0.1, so tests that check wrong secrets would otherwise slow
        # and lock out the next tests' logins; tests of the throttle set their own limits.
        # One worker unless a test asks for more (`--workers` beats the environment): the suite runs many
        # servers at once on a small machine, and the default (one per CPU) is tested on its own.
        env = {**os.environ, "NCR_ADMIN_PASSWORD": self.admin_password, "NCR_LOGIN_SLOW_AFTER": "50",
               "NCR_WORKERS": "1",
               "NCR_LOGIN_LOCK_AFTER": "100", **self.env}
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_ready(self.url, self.proc, verify=self.verify)
            if self.registries:
                self.ensure_registries(*self.registries)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def running(self) -> Iterator[Server]:
        """For a fixture: the server started, and stopped afterwards (`yield from Server(...).running()`)."""
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


REGISTRY_V3 = "registry-v3"  # CNCF Distribution 3.1.1, the pinned build in $NCR_TOOLS/bin
REGISTRY_V2 = "docker-registry"  # CNCF Distribution 2.8.2, Debian's package


def distribution_config(root: Path, host: str, *, auth_token: Mapping[str, str] | None = None,
                        proxy: Mapping[str, str] | None = None, htpasswd: Path | None = None,
                        access_log: bool = True) -> str:
    """Distribution's config as shipped (the upstream example's and Debian's: in-memory blob descriptor cache, delete
    enabled), storing under `root`/data, serving on `host`, logging errors only. `auth_token`: the options of its
    `auth: token:` section; `htpasswd`: an htpasswd file for Basic auth instead; `proxy`: of its `proxy:` section (remoteurl, username, password, ttl), which makes it a
    pull-through cache of the registry at `remoteurl`; `access_log` False turns the per-request log lines off."""
    return (
        "version: 0.1\n"
        "log:\n  level: error\n" + ("" if access_log else "  accesslog:\n    disabled: true\n")
        + "storage:\n"
        "  cache:\n    blobdescriptor: inmemory\n"
        f"  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {host}\n"
        + (token_auth_yaml(auth_token) if auth_token is not None else "")
        + (_yaml_section("auth.htpasswd", {"realm": "basic-realm", "path": str(htpasswd)}) if htpasswd else "")
        + (_yaml_section("proxy", proxy) if proxy is not None else "")
    )


@dataclass
class Distribution(_OnLoopback):
    """CNCF Distribution (Debian's docker-registry 2.8.2, or the pinned v3 build) on 127.0.0.1.

    `auth_token`: the options of Distribution's `auth: token:` section (realm, service, issuer,
    rootcertbundle and/or jwks; see `distribution_token_auth`); `htpasswd`: an htpasswd file (bcrypt)
    for Basic auth instead; neither (the default) configures no auth.
    `proxy`: the options of its `proxy:` section (see `pull_through_distribution`).
    """

    root: Path
    binary: str = REGISTRY_V2
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    auth_token: Mapping[str, str] | None = None
    htpasswd: Path | None = None
    proxy: Mapping[str, str] | None = None

    def start(self) -> Distribution:
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = self.root / "config.yml"
        cfg.write_text(distribution_config(self.root, self.host, auth_token=self.auth_token, proxy=self.proxy,
                                           htpasswd=self.htpasswd))
        exe = shutil.which(self.binary) or tool(self.binary)
        with open(self.root / "registry.log", "ab") as log:
            self.proc = subprocess.Popen([exe, "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
        wait_ready(self.url, self.proc)
        return self

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def log(self) -> str:
        path = self.root / "registry.log"
        return path.read_text(errors="replace") if path.exists() else ""


# -- Distribution trusting ncr-trio's tokens --------------------------------------------------------

TOKEN_KEY = Path("keys") / "token-signing-key.pem"  # under an ncr-trio data directory


def _yaml_section(path: str, options: Mapping[str, str]) -> str:
    """A YAML section `path` ("auth.token") of string options (JSON-quoted: valid YAML double-quoted scalars)."""
    keys = path.split(".")
    head = "".join(f"{'  ' * i}{k}:\n" for i, k in enumerate(keys))
    return head + "".join(f"{'  ' * len(keys)}{k}: {json.dumps(v)}\n" for k, v in options.items())


def token_auth_yaml(options: Mapping[str, str]) -> str:
    """Distribution's `auth: token:` section."""
    return _yaml_section("auth.token", options)


def token_signing_cert(key_pem: Path, out: Path, days: int = 30) -> Path:
    """Write to `out` a self-signed X.509 certificate (PEM) for the public key of ncr-trio's token signing
    key `key_pem` (<data>/keys/token-signing-key.pem), for Distribution's `rootcertbundle`. Distribution
    only takes the public key out of it; self-signing needs the private key, so the file must be readable."""
    key = serialization.load_pem_private_key(key_pem.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_pem} is not an EC private key")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ncr-trio token signing")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def distribution_token_auth(ncr_url: str, ncr_data: Path, out_dir: Path, *, jwks: bool = True,
                            realm: str | None = None, service: str = "ncr-trio", issuer: str = "ncr-trio"
                            ) -> dict[str, str]:
    """The `auth: token:` options that make Distribution accept the tokens of the ncr-trio server at
    `ncr_url` (data directory `ncr_data`, already started: its signing key exists) and send clients to its
    token endpoint (`realm`, by default `<ncr_url>/auth/token`).

    `rootcertbundle` is a self-signed certificate of ncr-trio's signing key: Distribution 2.x looks the
    token header's `kid` (ncr-trio: the key's libtrust fingerprint) up among the libtrust key IDs of the
    bundle's certificates. Distribution 3 keys the bundle's certificates by their RFC 7638 JWK thumbprint
    instead, so it only finds ncr-trio's key through `jwks`: a file holding ncr-trio's
    `/auth/jwks.json` (the same key, with the libtrust `kid`). 2.x ignores the `jwks` option.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    options = {
        "realm": realm or f"{ncr_url}/auth/token",
        "service": service,
        "issuer": issuer,
        "rootcertbundle": str(token_signing_cert(ncr_data / TOKEN_KEY, out_dir / "token-signing-cert.pem")),
    }
    if jwks:
        r = httpx.get(f"{ncr_url}/auth/jwks.json", timeout=10)
        r.raise_for_status()
        path = out_dir / "token-jwks.json"
        path.write_text(r.text)
        options["jwks"] = str(path)
    return options


# -- Distribution setups: sources of an image cache, and Distribution's own pull-through cache ---------------------
# (Distribution 2.8.2 anonymous is the default: `Distribution(root=...).start()`.)


def token_realm(ncr: Server) -> str:
    """ncr-trio's token endpoint, named `localhost`: crane (go-containerregistry >= 0.21) refuses a realm on a
    loopback or private IP literal unless it is the registry's own host:port, and Distribution's is not."""
    return f"http://localhost:{ncr.port}/auth/token"


def distribution_with_token_auth(root: Path, ncr: Server, binary: str = REGISTRY_V3) -> Distribution:
    """A Distribution (3.1.1 by default) started with token auth whose realm is the running ncr-trio `ncr`
    (`token_realm`): it trusts ncr-trio's signing key, so ncr-trio's users and access keys are its accounts and
    ncr-trio grants the scopes (tests/test_token_interop.py shows it). 2.x finds the key without `jwks`."""
    auth = distribution_token_auth(ncr.url, ncr.data, root / "auth", jwks=binary != REGISTRY_V2,
                                   realm=token_realm(ncr))
    return Distribution(root=root, binary=binary, auth_token=auth).start()


def pull_through_distribution(root: Path, remote: str, binary: str = REGISTRY_V3, username: str = "",
                              password: str = "") -> Distribution:
    """A Distribution (3.1.1 by default) started as a pull-through cache (`proxy: remoteurl:`) of the registry at
    `remote` (its base URL), logging in there with `username` and `password` if given. It serves the remote's
    repositories under the same names; pushes are refused."""
    proxy = {"remoteurl": remote, **({"username": username, "password": password} if username else {})}
    return Distribution(root=root, binary=binary, proxy=proxy).start()
