"""Locating the pinned command-line tools (helm, kubectl, ...) for the tests.

hack/controlplane/build.sh builds them into a versioned cache directory and
prints it with ``--print-bin-dir``; this module asks it once per session. A
tool that is missing skips the test on a developer machine but FAILS it when
``CI`` is true, so CI can never go green by silently testing nothing.

Also holds ``helm_template``, the one way the chart tests render the chart.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO_ROOT / "hack" / "controlplane" / "build.sh"
CHART_DIR = REPO_ROOT / "charts" / "whisperft"
# `helm template` defaults to Kubernetes v1.20 unless helm was built with the
# client-go version in its ldflags; the chart needs >= 1.29, so say which.
KUBE_VERSION = "1.35.0"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@functools.cache
def bin_dir() -> Path | None:
    """The control-plane bin dir that build.sh reports (None if it cannot say)."""
    override = os.environ.get("WHISPERFT_TOOLBIN")
    if override:
        return Path(override)
    if not BUILD_SCRIPT.is_file():
        return None
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-bin-dir"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    out = proc.stdout.strip()
    return Path(out) if proc.returncode == 0 and out else None


def find_tool(name: str, *, allow_path: bool = True) -> Path | None:
    """The pinned build of `name`, else (if allowed) the one on PATH."""
    directory = bin_dir()
    if directory is not None and (directory / name).is_file():
        return directory / name
    if allow_path:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def require_tool(name: str, *, allow_path: bool = True) -> Path:
    """`find_tool`, or skip (developer machine) / fail (CI=true) naming the fix."""
    tool = find_tool(name, allow_path=allow_path)
    if tool is not None:
        return tool
    where = bin_dir() or f"(no bin dir: {BUILD_SCRIPT} missing or failed)"
    message = (
        f"{name} is not installed: not in {where}"
        + (" nor on PATH" if allow_path else "")
        + f". Build it with: bash hack/controlplane/build.sh {name}"
        + " (or run `make controlplane`)."
    )
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def run_tool(args: Sequence[str | Path], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
        )
    return proc


def helm_template_text(
    helm: Path,
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "wft",
    namespace: str = "whisperft-system",
    values_files: Sequence[Path] = (),
    chart: Path = CHART_DIR,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `helm template` with values given as a dict (written as a values file)."""
    args: list[str | Path] = [
        helm,
        "template",
        release,
        chart,
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
    ]
    for path in values_files:
        args += ["--values", path]
    if values:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            yaml.safe_dump(dict(values), handle)
        try:
            return run_tool([*args, "--values", handle.name], check=check)
        finally:
            os.unlink(handle.name)
    return run_tool(args, check=check)


def helm_template(
    helm: Path, values: Mapping[str, Any] | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """The rendered objects (the CRD from crds/ is left out, as `helm template` does by default)."""
    text = helm_template_text(helm, values, **kwargs).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]
