"""`whisperft crd`, `whisperft render` and `whisperft operator run`.

Heavy imports (kopf, kubernetes) happen inside the command functions so
`whisperft --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    crd = sub.add_parser(
        "crd",
        help="print (or --write) the WhisperFineTune CRD and its field reference (docs/resource.md), generated from the API types",
    )
    crd.add_argument("--write", action="store_true", help="write the chart and kustomize copies")
    crd.add_argument("--check", action="store_true", help="exit 1 when a committed copy differs")
    crd.add_argument(
        "--root", type=Path, default=None, help="repository root (default: found from cwd)"
    )
    crd.set_defaults(func=_crd)

    render = sub.add_parser(
        "render",
        help="print exactly what the operator would create for a WhisperFineTune file (no cluster)",
    )
    render.add_argument(
        "file", type=Path, help="WhisperFineTune YAML (multi-document allowed; '-' for stdin)"
    )
    render.add_argument(
        "--attempt", type=int, default=1, help="attempt number to render (default 1)"
    )
    render.add_argument(
        "--plan", action="store_true", help="print the memory plan instead of manifests"
    )
    render.set_defaults(func=_render)

    op = sub.add_parser("operator", help="run the Kopf operator")
    op_sub = op.add_subparsers(dest="operator_command", metavar="ACTION", required=True)
    run = op_sub.add_parser(
        "run", help="run the operator against the current kubeconfig / in-cluster config"
    )
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch this namespace (repeatable; default: settings)",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="liveness endpoint URL ('' to disable)",
    )
    run.add_argument(
        "--peering", action="store_true", help="use Kopf peering (default: standalone)"
    )
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.add_argument(
        "--log-format", choices=("json", "plain", "full"), default="json", help="log format"
    )
    run.set_defaults(func=_operator_run)


def _repo_root(start: Path) -> Path:
    for p in (start, *start.parents):
        if (p / "pyproject.toml").exists() and (p / "charts").exists():
            return p
    raise SystemExit(f"whisperft crd: no repository root (pyproject.toml + charts/) above {start}")


def _crd(args: argparse.Namespace) -> int:
    from whisperft.operator.api.crd import CRD_FILES, crd_yaml, write_crd_files
    from whisperft.operator.api.reference import (
        REFERENCE_FILE,
        reference_markdown,
        write_reference,
    )

    if not (args.write or args.check):
        sys.stdout.write(crd_yaml())
        return 0
    root = args.root or _repo_root(Path.cwd())
    if args.check:
        wanted = {**{p: crd_yaml() for p in CRD_FILES}, REFERENCE_FILE: reference_markdown()}
        stale = [
            p
            for p, text in wanted.items()
            if not (root / p).exists() or (root / p).read_text() != text
        ]
        for p in stale:
            print(f"stale: {p} (run `whisperft crd --write`)", file=sys.stderr)
        return 1 if stale else 0
    for path in write_crd_files(root):
        print(f"wrote {path}")
    if (ref := write_reference(root)) is not None:
        print(f"wrote {ref}")
    return 0


def _render(args: argparse.Namespace) -> int:
    from whisperft.operator.api.resource import SpecError, load_resources
    from whisperft.operator.render.bundle import render_attempt
    from whisperft.operator.render.meta import Meta
    from whisperft.operator.render.output import to_yaml
    from whisperft.operator.settings import SettingsError, load_settings

    source = "<stdin>" if str(args.file) == "-" else str(args.file)
    try:
        text = sys.stdin.read() if source == "<stdin>" else args.file.read_text(encoding="utf-8")
    except FileNotFoundError:
        print(f"whisperft render: {source}: file not found", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
        resources = load_resources(text, source=source)
    except (SpecError, SettingsError) as exc:
        print(f"whisperft render: {exc}", file=sys.stderr)
        return 2
    docs: list[dict[str, Any]] = []
    status = 0
    for res in resources:
        meta = Meta(res.metadata.name, res.metadata.namespace, res.metadata.uid)
        out = render_attempt(res.spec, meta, settings, args.attempt)
        plan = out.resolution.plan
        print(
            f"# {meta.namespace}/{meta.name}: ZeRO stage {plan.stage}, offload optimizer "
            f"{plan.offload_optimizer}, offload params {plan.offload_params}; plan {plan.verdict}"
            + (
                f" ({plan.estimate.lower_gib:.1f}-{plan.estimate.upper_gib:.1f} GiB per GPU)"
                if plan.estimate
                else ""
            ),
        )
        for note in plan.notes:
            print(f"#   {note}")
        if meta.uid is None:
            print(
                "#   ownerReferences are added at creation time, once the API server has assigned a uid"
            )
        if out.problem is not None:
            print(
                f"whisperft render: {meta.name}: {out.problem.reason.value}: {out.problem.message}",
                file=sys.stderr,
            )
            status = 1
            continue
        docs.extend(out.children)
    if not args.plan and docs:
        sys.stdout.write(to_yaml(docs))
    return status


def _operator_run(args: argparse.Namespace) -> int:
    from whisperft.operator.runner import run_operator

    return run_operator(
        namespaces=args.namespace,
        all_namespaces=args.all_namespaces,
        liveness=args.liveness or None,
        standalone=not args.peering,
        verbose=args.verbose,
        log_format=args.log_format,
    )
