"""``whisperft fetch``: a finished run's model to local disk, ready for `whisperft evaluate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  whisperft fetch s3://models/runs/sw-small            # -> ./sw-small/{model,ct2,results.json}
  whisperft fetch gs://models/runs/sw-small out/sw --format hf
  whisperft fetch --resource sw-small -n speech        # model on the claim: a short-lived pod copies it
  whisperft evaluate --model ./sw-small/model --data DIR

Bucket credentials come from the environment (AWS_* for S3, application default
credentials or STORAGE_EMULATOR_HOST for GCS), never from a file of ours.
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fetch",
        help="download a finished run's model (bucket, or claim via a short-lived pod)",
        description=(
            "Download a finished run's model/ (Hugging Face), ct2/ (CTranslate2, when exported), "
            "results.json and training.png. SOURCE is the run's bucket output location "
            "(spec.output.location); with --resource the run is found by name and its model "
            "copied from wherever status.model says it is: a bucket, or the checkpoint claim "
            "through a pod that mounts it read-only and is deleted afterwards."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", nargs="?", metavar="SOURCE", help="s3://... or gs://... location")
    p.add_argument("dest", nargs="?", metavar="DEST", help="local directory (default: ./NAME)")
    p.add_argument("--resource", metavar="NAME", help="a WhisperFineTune in the current cluster")
    p.add_argument("-n", "--namespace", default="default", help="its namespace (default: default)")
    p.add_argument(
        "--format",
        choices=("hf", "ct2", "all"),
        default="all",
        help="which exported formats to fetch (default: all the run exported)",
    )
    p.add_argument("--image", help="image of the copy pod (default: the run's trainer image)")
    p.set_defaults(func=fetch_command)


def fetch_command(args: argparse.Namespace) -> int:
    from whisperft.trainer.fetch import FetchError, fetch_bucket, output_location
    from whisperft.trainer.storage.errors import StorageError
    from whisperft.trainer.storage.uri import URIError, is_uri, parse_uri

    formats = ("hf", "ct2") if args.format == "all" else (args.format,)
    if bool(args.source) == bool(args.resource):
        print(
            "error: give SOURCE (a bucket location) or --resource NAME, not both", file=sys.stderr
        )
        return 2
    try:
        if args.resource:
            dest = Path(args.dest or args.source or args.resource)
            fetched = _fetch_resource(args, dest, formats)
        else:
            if not is_uri(args.source):
                print(
                    f"error: {args.source!r} is not a bucket location (s3://BUCKET/PREFIX or "
                    "gs://BUCKET/PREFIX); for a run on a claim use --resource NAME",
                    file=sys.stderr,
                )
                return 2
            location = output_location(args.source)
            dest = Path(args.dest or parse_uri(location).name or "model")
            fetched = fetch_bucket(location, dest, formats=formats)
    except (FetchError, URIError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if exc.permanent else 1
    print(
        f"fetched {', '.join(fetched.formats)} ({fetched.bytes / 1e6:.1f} MB) into {fetched.dest}"
    )
    print(f"next: whisperft evaluate --model {fetched.dest / 'model'} --data DIR")
    return 0


def _fetch_resource(args: argparse.Namespace, dest: Path, formats: tuple[str, ...]) -> Any:
    from kubernetes import client, config

    from whisperft import names
    from whisperft.trainer.claim_copy import fetch_claim
    from whisperft.trainer.fetch import FetchError, fetch_bucket, output_location
    from whisperft.trainer.storage.uri import is_uri

    try:
        config.load_kube_config()
    except config.ConfigException:
        config.load_incluster_config()
    api: Any = client.CustomObjectsApi()
    body = api.get_namespaced_custom_object(
        names.GROUP, names.VERSION, args.namespace, names.PLURAL, args.resource
    )
    path = ((body.get("status") or {}).get("model") or {}).get("path")
    if not path:
        raise FetchError(f"{args.namespace}/{args.resource}: status.model is not set yet")
    if is_uri(path):
        return fetch_bucket(output_location(path), dest, formats=formats)
    return fetch_claim(body, dest, image=args.image, formats=formats)
