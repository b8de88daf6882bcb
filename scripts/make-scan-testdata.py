"""Make tests/data/vulndata/ from ../shared/vulndata (the real OSV data the scanner's tests read).

The shared copies are 3 MB zips; the tests need a few records of them. This keeps, unchanged:
- Go: every record naming the `stdlib` package (a go1.19.8 binary's findings) and every 10th other;
- PyPI: every record of urllib3 and requests (the README's matches) and every 10th other;
- and the records of KEEP_IDS (a `last_affected` range, withdrawn records), whatever their place;
- Alpine: the two secdb files and the apk installed database, copied whole (they are small).

Run from the repository root: `python scripts/make-scan-testdata.py ../shared/vulndata`.
Sources and licences are in tests/data/vulndata/README.md.
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

OUT = Path("tests/data/vulndata")
KEEP_IDS = {"PYSEC-2022-42969", "PYSEC-2023-141", "GO-2022-0617"}


def subset(source: Path, target: Path, keep_package: set[str]) -> int:
    kept = 0
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        names = sorted(n for n in zin.namelist() if n.endswith(".json"))
        for index, name in enumerate(names):
            data = zin.read(name)
            doc = json.loads(data)
            packages = {a.get("package", {}).get("name") for a in doc.get("affected") or []}
            if packages & keep_package or doc["id"] in KEEP_IDS or index % 10 == 0:
                info = zipfile.ZipInfo(name, date_time=zin.getinfo(name).date_time)
                info.compress_type = zipfile.ZIP_DEFLATED
                zout.writestr(info, data)
                kept += 1
    return kept


def main(shared: str) -> None:
    root = Path(shared)
    OUT.mkdir(parents=True, exist_ok=True)
    print("Go", subset(root / "Go-all.zip", OUT / "Go-subset.zip", {"stdlib"}))
    print("PyPI", subset(root / "PyPI-all.zip", OUT / "PyPI-subset.zip", {"urllib3", "requests"}))
    (OUT / "alpine").mkdir(exist_ok=True)
    for name in ("secdb-v3.4-main.yaml", "secdb-v3.4-community.yaml", "installed-trivy-testdata"):
        shutil.copyfile(root / "alpine" / name, OUT / "alpine" / name)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/vulndata")
