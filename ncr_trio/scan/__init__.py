"""Vulnerability scanning, offline: image layers -> package inventory -> OSV matches (issue 13).

    apk.py       Alpine's apk version ordering, written from its rules
    versions.py  version ordering per ecosystem (apk, dpkg, rpm, PEP 440, SemVer, Go)

The modules are synchronous and CPU/disk bound: the server calls them from worker threads
(trio.to_thread.run_sync with a CapacityLimiter), never on the Trio thread.
"""
