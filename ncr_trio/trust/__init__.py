"""Image trust (issue 14), the library: cosign signatures found in every layout and verified offline.

    keys.py    trusted public keys (PEM from cosign.pub): parsed, checked, identified
    detect.py  a subject's signatures: the .sig tag, OCI 1.1 referrers, sigstore bundles
    verify.py  each signature against the trusted keys (no network, no transparency log), and an
               image's state (unsigned / signed / verified / invalid)

How the registry uses it: when a manifest arrives, `parse_signature_manifest(raw, digest, tag)` says
whether it is a signature and of which subject; `await find_signatures(subject, source)` reads a
subject's signatures through a `Source` over the repository's storage; `verify(signature, keys)`
(in a worker thread) gives each a `Verdict`, and `summarize(verdicts)` the image's `signed` state.
Keys are parsed once with `parse_public_key(pem)` (KeyRejected, a ValueError, for the uploader).
"""

from ncr_trio.trust.detect import (
    Layout,
    Signature,
    SignatureManifest,
    Source,
    find_signatures,
    parse_signature_manifest,
    read_signatures,
    signature_tag,
    subject_of_tag,
)
from ncr_trio.trust.keys import KeyAlgorithm, KeyRejected, TrustedKey, parse_public_key
from ncr_trio.trust.verify import State, Status, Summary, Verdict, summarize, verify

__all__ = [
    "KeyAlgorithm",
    "KeyRejected",
    "Layout",
    "Signature",
    "SignatureManifest",
    "Source",
    "State",
    "Status",
    "Summary",
    "TrustedKey",
    "Verdict",
    "find_signatures",
    "parse_public_key",
    "parse_signature_manifest",
    "read_signatures",
    "signature_tag",
    "subject_of_tag",
    "summarize",
    "verify",
]
