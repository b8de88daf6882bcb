"""Vulnerability scanning, offline: image layers -> package inventory -> OSV matches (issue 13).

    apk.py       Alpine's apk version ordering, written from its rules
    versions.py  version ordering per ecosystem (apk, dpkg, rpm, PEP 440, SemVer, Go)
    osv.py       OSV records, evaluation rules, severity, aliases merged
    vulndb.py    the SQLite database of OSV records: import (swapped in atomically) and lookups
    gobuildinfo.py  Go build information of an ELF binary, read from a stream
    extract.py   layers -> package inventory (whiteouts applied, only the files that matter)
    scanner.py   inventory + database -> report
    jobs.py      scan jobs: requests, the runner (lifespan), scan on push, the periodic scan, pull prevention

The modules but jobs.py are synchronous and CPU/disk bound: the server calls them from worker threads
(trio.to_thread.run_sync with a CapacityLimiter), never on the Trio thread.
"""
