"""The Dockerfile: hadolint-clean, two non-root targets, and every Python
package in the images pinned by requirements.lock (the file the tests install
from), so an image cannot drift from what CI tested."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
LOCK = REPO_ROOT / "requirements.lock"
WHEEL_REF = re.compile(
    r"^whisperft\[(?P<extra>\w+)\] @ file:///tmp/wheels/whisperft-\$\{VERSION\}-py3-none-any\.whl$"
)
HEAVY = {"torch", "deepspeed", "ray", "transformers", "datasets"}


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, args)

    def args_of(self, instruction: str) -> list[str]:
        return [a for i, a in self.instructions if i == instruction]


def parse() -> tuple[dict[str, str], dict[str, Stage]]:
    """Global ARG defaults and the stages, with line continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            base, _, name = rest.partition(" AS ")
            current = Stage(name.strip(), base.strip())
            stages[current.name] = current
        elif current is None and instruction == "ARG":
            key, _, default = rest.partition("=")
            global_args[key] = default
        elif current is not None:
            current.instructions.append((instruction, " ".join(rest.split())))
    return global_args, stages


def lock_entries(path: Path = LOCK) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, its --hash values), from a hashed lock file."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line:
            pin, *hashes = line.split()
            name, _, version = pin.partition("==")
            out[canonicalize_name(name)] = (version, [h.removeprefix("--hash=") for h in hashes])
    return out


def lock_pins() -> dict[str, str]:
    return {name: version for name, (version, _) in lock_entries().items()}


def pip_installs(stage: Stage) -> list[list[str]]:
    """Each `pip install ...` command of the stage's RUN lines, as argv."""
    out = []
    for run in stage.args_of("RUN"):
        for command in run.split("&&"):
            argv = shlex.split(command)
            if argv[:2] == ["pip", "install"]:
                out.append(argv[2:])
    return out


def closure(extra: str) -> set[str]:
    """Every distribution `pip install whisperft[extra]` pulls in (from the
    installed metadata of the environment the tests run in)."""
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [("whisperft", frozenset({extra}))]
    while todo:
        name, extras = todo.pop()
        dist = metadata.distribution(name)
        for spec in dist.requires or []:
            req = Requirement(spec)
            wanted = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in wanted):
                continue
            key = canonicalize_name(req.name)
            if key not in seen:
                seen.add(key)
                todo.append((req.name, frozenset(req.extras)))
            elif req.extras:
                todo.append((req.name, frozenset(req.extras)))
    seen.discard("whisperft")
    return seen


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    proc = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3013" in proc.stdout


def test_two_targets_on_pinned_bases_matching_the_lock() -> None:
    args, stages = parse()
    assert {"operator", "trainer"} <= set(stages)
    pins = lock_pins()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert stages["operator"].base == "${PYTHON_IMAGE}"
    assert re.fullmatch(
        rf"python:{re.escape(python)}\.\d+-slim-\w+@sha256:[0-9a-f]{{64}}", args["PYTHON_IMAGE"]
    ), "the Python base is pinned by digest"
    assert stages["trainer"].base == "${RAY_IMAGE}"
    ray_tag = args["RAY_IMAGE"].split("@", 1)[0].split(":", 1)[1]
    assert ray_tag.startswith(f"{pins['ray']}-py{python.replace('.', '')}-"), ray_tag
    assert ray_tag.endswith(("-gpu",)) or re.search(r"-cu\d+$", ray_tag)
    import whisperft

    assert args["VERSION"] == whisperft.__version__


@pytest.mark.parametrize("target", ["operator", "trainer"])
def test_every_package_in_the_image_is_pinned_by_the_lock(target: str) -> None:
    _, stages = parse()
    stage = stages[target]
    assert "requirements-bootstrap.lock requirements.lock /tmp/" in " ".join(stage.args_of("COPY"))
    pins = lock_pins()
    installs = pip_installs(stage)
    assert installs, f"{target} installs nothing"
    extras: set[str] = set()
    bootstrap = ["--no-cache-dir", "--require-hashes", "-r", "/tmp/requirements-bootstrap.lock"]
    assert installs[0] == bootstrap, "the hash-checking pip must be installed first"
    for argv in installs[1:]:
        assert "-c" in argv and argv[argv.index("-c") + 1] == "/tmp/requirements.lock", argv
        packages = [a for i, a in enumerate(argv) if not a.startswith("-") and argv[i - 1] != "-c"]
        for package in packages:
            match = WHEEL_REF.match(package)
            if match:
                extras.add(match["extra"])
                continue
            req = Requirement(package)
            assert canonicalize_name(req.name) in pins, f"{package} is not in requirements.lock"
            if req.specifier:
                assert req.specifier == f"=={pins[canonicalize_name(req.name)]}", package
    assert extras == {target}
    # The constraints pin only what is listed: everything pip pulls in must be.
    missing = sorted(closure(target) - set(pins))
    assert not missing, (
        f"whisperft[{target}] needs packages requirements.lock does not pin: {missing}"
    )


def test_operator_image_carries_no_torch() -> None:
    assert not closure("operator") & HEAVY
    assert {"torch", "deepspeed", "ray", "transformers"} <= closure("trainer")


def test_build_stage_pins_satisfy_the_build_system() -> None:
    _, stages = parse()
    wheel = stages["wheel"]
    defaults = dict(a.split("=", 1) for a in wheel.args_of("ARG") if "=" in a)
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    requires = re.search(r"(?ms)^\[build-system\].*?^requires = \[(.*?)\]", pyproject)
    assert requires is not None
    for spec in re.findall(r'"([^"]+)"', requires[1]):
        req = Requirement(spec)
        pinned = defaults[f"{req.name.upper()}_VERSION"]
        assert Version(pinned) in req.specifier, f"{req.name}=={pinned} does not satisfy {spec}"


@pytest.mark.parametrize("target", ["operator", "trainer"])
def test_runs_as_a_numeric_non_root_user_with_oci_labels(target: str) -> None:
    _, stages = parse()
    stage = stages[target]
    (user,) = stage.args_of("USER")[-1:]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit()
    assert stage.instructions[-1][0] in {"USER", "WORKDIR", "CMD", "ENTRYPOINT", "EXPOSE"}
    labels = " ".join(stage.args_of("LABEL"))
    for key in ("title", "description", "version", "revision", "created", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert 'org.opencontainers.image.version="${VERSION}"' in labels


def test_users_match_what_the_chart_and_operator_run_them_as() -> None:
    _, stages = parse()
    values = yaml.safe_load((REPO_ROOT / "charts" / "whisperft" / "values.yaml").read_text())
    operator_uid = stages["operator"].args_of("USER")[-1].split(":")[0]
    assert int(operator_uid) == values["podSecurityContext"]["runAsUser"]
    trainer_uid, trainer_gid = stages["trainer"].args_of("USER")[-1].split(":")
    assert (int(trainer_uid), int(trainer_gid)) == (
        values["trainer"]["runAsUser"],
        values["trainer"]["fsGroup"],
    )
    from whisperft.operator.settings import Settings

    assert (Settings().run_as_user, Settings().fs_group) == (int(trainer_uid), int(trainer_gid))


def test_dockerignore_admits_exactly_what_the_dockerfile_copies() -> None:
    _, stages = parse()
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert "*" in (REPO_ROOT / ".dockerignore").read_text().splitlines()
    copied: set[str] = set()
    for stage in stages.values():
        for args in stage.args_of("COPY"):
            parts = [p for p in args.split() if not p.startswith("--")]
            if "--from=" in args:
                continue
            copied.update(p.rstrip("/") for p in parts[:-1])
    assert copied == allowed
    for path in copied:
        assert (REPO_ROOT / path).exists(), path


# Run in a subprocess: any import whose distribution is not in the operator
# image's closure fails, as it would in that image.
_BLOCKER = """
import importlib.metadata as md
import re
import sys
from importlib.abc import MetaPathFinder


def canonicalize_name(name):
    return re.sub(r"[-_.]+", "-", name).lower()


ALLOWED = set(sys.argv[1].split(","))
OWNERS = md.packages_distributions()


class NotInImage(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        dists = {canonicalize_name(d) for d in OWNERS.get(top, [])}
        if dists and not dists & ALLOWED:
            raise ModuleNotFoundError(f"No module named {top!r} in the operator image", name=top)
        return None


sys.meta_path.insert(0, NotInImage())
if sys.argv[2] == "--import":
    __import__(sys.argv[3])
else:
    from whisperft.cli import main

    sys.argv = ["whisperft", *sys.argv[2:]]
    sys.exit(main())
"""


def _in_operator_image(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "in_operator_image.py"
    script.write_text(_BLOCKER)
    allowed = sorted(closure("operator") | {"whisperft"})
    return subprocess.run(
        [sys.executable, str(script), ",".join(allowed), *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args",
    [["operator", "run", "--help"], ["render", "manifests/examples/minimal.yaml"], ["crd"]],
    ids=["operator-run", "render", "crd"],
)
def test_operator_image_cli_works_without_the_trainer_stack(
    tmp_path: Path, args: list[str]
) -> None:
    proc = _in_operator_image(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout


def test_operator_image_check_really_blocks_the_trainer_stack(tmp_path: Path) -> None:
    for module in ("torch", "numpy", "transformers"):
        proc = _in_operator_image(tmp_path, "--import", module)
        assert proc.returncode != 0 and "in the operator image" in proc.stderr, module


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-bootstrap.lock"])
def test_every_pin_carries_sha256_hashes(lock: str) -> None:
    entries = lock_entries(REPO_ROOT / lock)
    assert entries
    for name, (version, hashes) in entries.items():
        assert version and hashes, f"{lock}: {name} has no --hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), (name, hashes)


def test_make_installs_with_require_hashes() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    installs = re.findall(r"^\t\$\(VENV\)/bin/pip install (.*)$", makefile, re.M)
    from_locks = [i for i in installs if "-r $(" in i]
    assert len(from_locks) == 2 and all("--require-hashes" in i for i in from_locks), installs
    assert not [i for i in installs if "--upgrade" in i], "an unpinned upgrade escapes the locks"


def test_pin_images_rewrites_every_base_to_its_digest(tmp_path: Path) -> None:
    """hack/pin-images.sh, against a stand-in `crane` (no registry is reachable here)."""
    import os
    import subprocess

    bindir = tmp_path / "bin"
    bindir.mkdir()
    crane = bindir / "crane"
    crane.write_text('#!/bin/sh\necho "sha256:$(printf %s "$2" | sha256sum | cut -c1-64)"\n')
    crane.chmod(0o755)
    df = tmp_path / "Dockerfile"
    df.write_text((REPO_ROOT / "Dockerfile").read_text())
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    subprocess.run(
        ["bash", str(REPO_ROOT / "hack/pin-images.sh"), str(df)],
        check=True,
        env=env,
        capture_output=True,
    )
    args = {
        k: v
        for k, v in (
            line[4:].split("=", 1)
            for line in df.read_text().splitlines()
            if line.startswith("ARG ") and "=" in line
        )
        if k.endswith("_IMAGE")
    }
    assert set(args) == {"PYTHON_IMAGE", "RAY_IMAGE"}
    for value in args.values():
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", value), value
    # The tag is kept and resolved afresh, not the old digest.
    assert args["RAY_IMAGE"].startswith("rayproject/ray:")
    assert "65a93d69" not in args["PYTHON_IMAGE"]
