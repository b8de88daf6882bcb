"""Image trust through the management API (docs/trust.md):

    ncr-trio trust key list|add|delete [--registry REGISTRY]   cosign public keys a registry trusts
                                                               (without --registry: every registry;
                                                               system administrators)
    ncr-trio trust settings show|set REGISTRY                  a registry's signature requirements
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ncr_trio.cli.commands import Ctx, add_group, add_leaf, done, show_fields, show_listing
from ncr_trio.cli.output import UsageError, col, when


def _scope(ctx: Ctx) -> str:
    return f"registry {ctx.args.registry}" if ctx.args.registry else "every registry"


def _key_fields(k: Any) -> list[tuple[str, str]]:
    return [("name", k["name"]), ("id", k["id"]), ("algorithm", k["algorithm"]),
            ("registry", k.get("registry") or "- (every registry)"), ("created", when(k.get("created_at")))]


def cmd_key_list(ctx: Ctx) -> int:
    doc = (ctx.api.doc("api.registry.trust.keys", registry=ctx.args.registry) if ctx.args.registry
           else ctx.api.doc("api.trust.keys"))
    return show_listing(ctx, doc, "keys", [col("NAME", "name", no_wrap=True), col("ID", "id"),
                                           col("ALGORITHM", "algorithm"), col("CREATED", "created_at", when)],
                        "trusted keys")


def cmd_key_add(ctx: Ctx) -> int:
    a = ctx.args
    try:
        pem = Path(a.public_key).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{a.public_key}: {e}") from None
    body = {"name": a.name, "pem": pem}
    k = (ctx.api.doc("api.registry.trust.key.add", body, registry=a.registry) if a.registry
         else ctx.api.doc("api.trust.key.add", body))
    return show_fields(ctx, k, _key_fields(k))


def cmd_key_delete(ctx: Ctx) -> int:
    a = ctx.args
    ctx.confirm(f"stop trusting key {a.name} in {_scope(ctx)}", "")
    if a.registry:
        ctx.api.call("api.registry.trust.key.delete", registry=a.registry, key_name=a.name)
    else:
        ctx.api.call("api.trust.key.delete", key_name=a.name)
    return done(ctx, None, f"Deleted trusted key {a.name} of {_scope(ctx)}")


def _settings_fields(s: Any) -> list[tuple[str, str]]:
    return [("registry", s["registry"]), ("require signature", "yes" if s["require_signature"] else "no"),
            ("require verified signature", "yes" if s["require_verified_signature"] else "no")]


def cmd_settings_show(ctx: Ctx) -> int:
    s = ctx.api.doc("api.registry.trust", registry=ctx.args.registry)
    return show_fields(ctx, s, _settings_fields(s))


def cmd_settings_set(ctx: Ctx) -> int:
    a = ctx.args
    changes = {k: v for k, v in (("require_signature", a.require_signature),
                                 ("require_verified_signature", a.require_verified_signature)) if v is not None}
    if not changes:
        raise UsageError("nothing to change: give --require-signature / --no-require-signature or "
                         "--require-verified-signature / --no-require-verified-signature")
    s = ctx.api.doc("api.registry.trust.update", changes, registry=a.registry)
    return show_fields(ctx, s, _settings_fields(s))


def add_commands(sub: Any) -> None:
    """`trust`, on the top-level subparsers `sub`."""
    trust = add_group(sub, "trust", "image trust: cosign public keys, and a registry's signature requirements")
    key = add_group(trust, "key", "cosign public keys trusted by a registry (--registry) or by every registry",
                    dest="trust_verb")
    sp = add_leaf(key, "list", "the trusted keys", cmd_key_list)
    sp.add_argument("--registry", help="a registry's own keys (default: those every registry trusts)")
    sp = add_leaf(key, "add", "trust a cosign public key (cosign.pub)", cmd_key_add)
    sp.add_argument("name", help="letters, digits, '.', '_' or '-'")
    sp.add_argument("public_key", metavar="PUBLIC_KEY_FILE", help="the public key file cosign wrote (cosign.pub)")
    sp.add_argument("--registry", help="trusted by this registry only (default: by every registry)")
    sp = add_leaf(key, "delete", "stop trusting a key", cmd_key_delete, destructive=True)
    sp.add_argument("name")
    sp.add_argument("--registry", help="a registry's own key (default: one every registry trusts)")
    settings = add_group(trust, "settings", "a registry's signature requirements, enforced at pull (412)",
                         dest="trust_verb")
    add_leaf(settings, "show", "the registry's requirements", cmd_settings_show).add_argument("registry")
    sp = add_leaf(settings, "set", "change the registry's requirements", cmd_settings_set)
    sp.add_argument("registry")
    for flag in ("require-signature", "require-verified-signature"):
        dest = flag.replace("-", "_")
        g = sp.add_mutually_exclusive_group()
        g.add_argument(f"--{flag}", dest=dest, action="store_const", const=True, default=None)
        g.add_argument(f"--no-{flag}", dest=dest, action="store_const", const=False)


__all__ = ["add_commands"]
