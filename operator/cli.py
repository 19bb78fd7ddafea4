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
        "--peering",
        nargs="?",
        const="default",
        default=None,
        metavar="NAME",
        help="run as one of several replicas peered through the KopfPeering (or, with -A, "
        "ClusterKopfPeering) object NAME (default 'default'), which must exist; the replica "
        "with the highest priority works, the others stand by (default: standalone)",
    )
    run.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority (default: random, so that replicas differ: equal priorities "
        "all pause)",
    )
    run.add_argument(
        "--peering-lifetime",
        type=int,
        default=None,
        metavar="SECONDS",
        help="how long a replica's keep-alive counts: a crashed active replica is replaced "
        "after this (Kopf's default 60)",
    )
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.add_argument(
        "--log-format", choices=("json", "plain", "full"), default="json", help="log format"
    )
    run.set_defaults(func=_operator_run)

    rm = op_sub.add_parser(
        "remove-finalizers",
        help="runbook: remove the operator's finalizer from WhisperFineTunes (after an "
        "uninstall, so namespaces are not stuck Terminating); refuses while an operator runs",
    )
    rm_scope = rm.add_mutually_exclusive_group(required=True)
    rm_scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="this namespace (repeatable)"
    )
    rm_scope.add_argument("--all-namespaces", "-A", action="store_true", help="every namespace")
    rm.add_argument(
        "--force",
        action="store_true",
        help="even while an operator seems to run (it would add the finalizer back, or miss "
        "a deletion's clean-up)",
    )
    rm.add_argument("--dry-run", action="store_true", help="only say what would change")
    rm.set_defaults(func=_remove_finalizers)


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
    import os

    from whisperft.operator.handlers import startup
    from whisperft.operator.runner import run_operator

    # The start-up handler configures Kopf's peering from these (handlers/startup.py).
    for env, value in (
        (startup.ENV_PEERING, args.peering),
        (startup.ENV_PEERING_PRIORITY, args.priority),
        (startup.ENV_PEERING_LIFETIME, args.peering_lifetime),
    ):
        if value is not None:
            os.environ[env] = str(value)
    return run_operator(
        namespaces=args.namespace,
        all_namespaces=args.all_namespaces,
        liveness=args.liveness or None,
        standalone=not args.peering,
        verbose=args.verbose,
        log_format=args.log_format,
    )


def _remove_finalizers(args: argparse.Namespace) -> int:
    """The uninstall runbook (docs/operations.md). Safe because the children do not
    need the finalizer: every RayJob, ConfigMap and trainer identity carries a
    controller owner reference, so the garbage collector removes them with their
    WhisperFineTune. The finalizer only makes the operator free the GPUs first."""
    from whisperft.operator import kube
    from whisperft.operator.handlers.startup import FINALIZER

    kube.load_config()
    namespaces = None if args.all_namespaces else list(dict.fromkeys(args.namespace))
    prog = "whisperft operator remove-finalizers"
    if not args.force:
        running = _running_operators(namespaces)
        if running:
            print(
                f"{prog}: refused, a whisperft operator may still run:\n  "
                + "\n  ".join(running)
                + "\nUninstall it (or scale it to 0) first: a running operator adds the "
                "finalizer back. --force skips this check.",
                file=sys.stderr,
            )
            return 1
    removed = without = 0
    failed: list[str] = []
    for obj in _finetunes(namespaces):
        md = obj["metadata"]
        ns, name = md["namespace"], md["name"]
        if FINALIZER not in (md.get("finalizers") or []):
            without += 1
            continue
        if args.dry_run:
            print(f"would remove {FINALIZER} from {ns}/{name}")
            removed += 1
            continue
        try:
            _drop_finalizer(ns, name, FINALIZER)
        except Exception as exc:
            failed.append(f"{ns}/{name}: {exc}")
            continue
        print(f"removed {FINALIZER} from {ns}/{name}")
        removed += 1
    for line in failed:
        print(f"{prog}: failed: {line}", file=sys.stderr)
    print(
        f"{removed} WhisperFineTune(s) {'to change' if args.dry_run else 'changed'}, "
        f"{without} without the finalizer. Their RayJobs and other children are "
        "garbage-collected when they are deleted (owner references)."
    )
    return 1 if failed else 0


def _finetunes(namespaces: list[str] | None) -> list[dict[str, Any]]:
    from kubernetes import client

    from whisperft import names

    api = client.CustomObjectsApi()
    if namespaces is None:
        out: Any = api.list_cluster_custom_object(names.GROUP, names.VERSION, names.PLURAL)
        return list(out.get("items", []))
    items: list[dict[str, Any]] = []
    for ns in namespaces:
        out = api.list_namespaced_custom_object(names.GROUP, names.VERSION, ns, names.PLURAL)
        items.extend(out.get("items", []))
    return items


def _drop_finalizer(ns: str, name: str, finalizer: str, attempts: int = 5) -> None:
    """Remove one finalizer, keeping everyone else's, with a resourceVersion
    precondition (a concurrent change is re-read, never overwritten)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from whisperft import names

    api = client.CustomObjectsApi()
    for _ in range(attempts):
        try:
            obj: Any = api.get_namespaced_custom_object(
                names.GROUP, names.VERSION, ns, names.PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        md = obj["metadata"]
        current = list(md.get("finalizers") or [])
        if finalizer not in current:
            return
        patch = {
            "metadata": {
                "resourceVersion": md["resourceVersion"],
                "finalizers": [f for f in current if f != finalizer],
            }
        }
        try:
            api.patch_namespaced_custom_object(
                names.GROUP, names.VERSION, ns, names.PLURAL, name, patch
            )
            return
        except ApiException as exc:
            if exc.status == 404:
                return
            if exc.status != 409:
                raise
    raise RuntimeError(f"changed under each of {attempts} attempts")


def _running_operators(namespaces: list[str] | None) -> list[str]:
    """What suggests a whisperft operator still runs: a live peer in a Kopf peering
    object, or an operator Deployment (chart or kustomize labels) with replicas.
    A standalone operator outside the cluster leaves no trace: stop it first."""
    import datetime

    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    found: list[str] = []
    now = datetime.datetime.now(datetime.UTC)
    custom = client.CustomObjectsApi()

    def live_peers(obj: dict[str, Any], where: str) -> None:
        for peer, info in (obj.get("status") or {}).items():
            if not isinstance(info, dict) or "lastseen" not in info:
                continue
            seen = datetime.datetime.fromisoformat(str(info["lastseen"]))
            if seen.tzinfo is None:
                seen = seen.replace(tzinfo=datetime.UTC)
            if seen + datetime.timedelta(seconds=int(info.get("lifetime", 60))) > now:
                age = (now - seen).total_seconds()
                found.append(f"{where}: live peer {peer} (seen {age:.0f}s ago)")

    peerings: list[tuple[str, dict[str, Any]]] = []
    try:
        out: Any = custom.list_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings")
        peerings += [(f"ClusterKopfPeering {o['metadata']['name']}", o) for o in out["items"]]
        for ns in namespaces if namespaces is not None else [None]:
            if ns is None:
                out = custom.list_cluster_custom_object("kopf.dev", "v1", "kopfpeerings")
            else:
                out = custom.list_namespaced_custom_object("kopf.dev", "v1", ns, "kopfpeerings")
            peerings += [
                (f"KopfPeering {o['metadata']['namespace']}/{o['metadata']['name']}", o)
                for o in out["items"]
            ]
    except ApiException as exc:
        if exc.status == 403:
            found.append(f"cannot read Kopf peering objects ({exc.status} {exc.reason})")
        elif exc.status != 404:  # 404: the peering CRDs are not installed
            raise
    for where, obj in peerings:
        live_peers(obj, where)
    try:
        deployments = client.AppsV1Api().list_deployment_for_all_namespaces(
            label_selector="app.kubernetes.io/component=operator,app.kubernetes.io/part-of=whisperft"
        )
        for d in deployments.items:
            replicas = (d.spec.replicas if d.spec else 0) or 0
            if replicas > 0:
                meta = d.metadata
                found.append(
                    f"Deployment {meta.namespace}/{meta.name}: {replicas} replica(s)"
                    if meta
                    else f"a Deployment with {replicas} replica(s)"
                )
    except ApiException as exc:
        if exc.status != 403:
            raise
        found.append(f"cannot list Deployments to look for the operator ({exc.status})")
    return found
