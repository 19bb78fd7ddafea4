"""Add `--hash=sha256:` lines to requirements.lock for every file PyPI publishes
for each pinned version, so `pip install --require-hashes -r requirements.lock`
refuses anything else (a swapped file, a compromised mirror).

    python tools/lock_hashes.py [requirements.lock]

Hashes come from PyPI's simple index (PEP 691 JSON), all platforms, so the
lock also serves the container images. Rerun after every re-pin (`make lock`).
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

INDEX = "https://pypi.org/simple"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def file_version(filename: str) -> tuple[str, Version] | None:
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return str(name), version


def hashes(name: str, version: str) -> list[str]:
    req = urllib.request.Request(
        f"{INDEX}/{canonicalize_name(name)}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        files = json.load(r)["files"]
    want = (canonicalize_name(name), Version(version))
    found = sorted(
        {
            f["hashes"]["sha256"]
            for f in files
            if "sha256" in f.get("hashes", {})
            and (fv := file_version(f["filename"])) is not None
            and (canonicalize_name(fv[0]), fv[1]) == want
        }
    )
    if not found:
        raise SystemExit(f"{name}=={version}: no files on {INDEX}")
    return found


def main(path: Path) -> None:
    out: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("--hash=") or (not stripped and out and out[-1].endswith("\\")):
            continue  # an earlier run's hashes: recomputed below
        m = PIN.match(stripped)
        if not m:
            out.append(line)
            continue
        pin = stripped.split("\\")[0].strip()
        digests = hashes(m.group(1), m.group(2))
        out.append(f"{pin} \\")
        out += [f"    --hash=sha256:{d}" + (" \\" if i < len(digests) - 1 else "")
                for i, d in enumerate(digests)]  # fmt: skip
        print(f"{pin}: {len(digests)} files", file=sys.stderr)
    path.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "requirements.lock"))
