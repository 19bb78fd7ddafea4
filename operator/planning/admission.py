"""Checks a valid spec must still pass before the operator plans it: what the
CRD schema cannot know (the model's languages, what a cluster can write to,
which images and scheduling the platform allows).

A refusal here is a `Planned=False` condition naming the field, before any GPU
is asked for; `whisperft render` and `whisperft train --dry-run` show the same.
"""

from __future__ import annotations

from whisperft.languages import LanguageError, check_language
from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.planning.whisper_sizes import dims_for
from whisperft.operator.settings import NodePool, Settings
from whisperft.trainer.storage.uri import URIError, is_uri, parse_uri


def language_problem(spec: WhisperFineTuneSpec) -> str | None:
    """Why the spec's language cannot train on its model, when the model is known by name."""
    m = spec.model
    try:
        check_language(m.name, m.language, train_as=m.train_as_language)
    except LanguageError as exc:
        return str(exc)
    return None


def cluster_problem(spec: WhisperFineTuneSpec) -> str | None:
    """What only a local run can do."""
    where = spec.output.location
    if where is None:
        return None
    if not is_uri(where):
        return (
            f"spec.output.location: {where!r} is a local directory, which only "
            "`whisperft train` can write; on a cluster use a bucket (s3://BUCKET/PREFIX or "
            "gs://BUCKET/PREFIX) or leave it unset (the model stays on the checkpoint claim)"
        )
    try:
        parse_uri(where)
    except URIError as exc:
        return f"spec.output.location: {exc}"
    return None


def _repository(image: str) -> str:
    """`registry/path/name` without `:tag` or `@digest` (a registry port is not a tag)."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def _under(repository: str, prefix: str) -> bool:
    """Whether `repository` is `prefix` or below it, by whole path segments, so that
    `registry.corp/ml` does not admit `registry.corp/ml-evil/...`."""
    prefix = prefix.rstrip("/")
    return repository == prefix or repository.startswith(prefix + "/")


def image_problem(spec: WhisperFineTuneSpec, settings: Settings) -> str | None:
    """A `spec.image` outside the platform's allowlist (settings.allowedImages).

    With no allowlist only the installed trainer image runs: its exact reference, or
    its repository pinned by digest.
    """
    image = spec.image
    if image is None or image == settings.trainer_image:
        return None
    digest = "@sha256:" in image
    if settings.require_image_digest and not digest:
        return (
            f"spec.image: {image!r} is not pinned by digest; this cluster requires "
            "repository@sha256:<digest>"
        )
    repo = _repository(image)
    if settings.allowed_images:
        if any(_under(repo, p) for p in settings.allowed_images):
            return None
        allowed = ", ".join(settings.allowed_images)
        return f"spec.image: {image!r} is not from an allowed repository ({allowed})"
    if digest and repo == _repository(settings.trainer_image):
        return None
    return (
        f"spec.image: {image!r} is not allowed; this cluster runs only the installed trainer "
        f"image {settings.trainer_image!r} (the platform team can allow more with "
        "the chart's trainer.allowedImages)"
    )


def scheduling_problem(spec: WhisperFineTuneSpec, pool: NodePool | None) -> str | None:
    """Scheduling a user may add to the pool's, never replace: no toleration of every
    taint, and no nodeSelector key that contradicts the pool's."""
    r = spec.resources
    for i, t in enumerate(r.tolerations):
        if t.operator == "Exists" and not t.key:
            return (
                f"spec.resources.tolerations[{i}]: operator Exists without a key tolerates every "
                "taint (control-plane and other teams' nodes too); name the taint's key"
            )
    for key, value in r.node_selector.items():
        wanted = (pool.node_selector if pool else {}).get(key)
        if wanted is not None and wanted != value:
            return (
                f"spec.resources.nodeSelector[{key}]: {value!r} contradicts the node pool "
                f"{r.accelerator!r}, which selects {wanted!r}; leave the key out"
            )
    return None


def lora_problem(spec: WhisperFineTuneSpec) -> str | None:
    """A LoRA setting that cannot train as asked (lora.mode on, or auto: the planner may use it).

    Tried with peft on DeepSpeed's CPU accelerator, 2 gloo ranks (docs/lora.md):
    ZeRO 0-3, optimizer and parameter offload, fp32 and bf16, gradient
    checkpointing, SpecAugment, a whole or frozen encoder with its output cache
    all train, checkpoint only the adapters and resume, so none is refused (fp16
    could not be tried: the CPU accelerator has none). What is refused is a rank
    wider than the model: every adapted layer has the model's width on one side,
    so a rank above it learns nothing more and only costs memory and bytes.
    """
    lora = spec.training.lora
    if not lora.may_train:
        return None
    dims = dims_for(spec.model.name)
    if dims is not None and lora.rank > dims.d_model:
        return (
            f"spec.training.lora.rank: {lora.rank} is wider than {spec.model.name!r} "
            f"(width {dims.d_model}); an adapter cannot learn more than rank {dims.d_model} "
            f"there, so use at most {dims.d_model}"
        )
    return None
