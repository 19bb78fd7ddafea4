"""whisperft from Python and notebooks: the same WhisperFineTune resource, the
same validation and the same code paths as `whisperft train` and `kubectl apply`.

    from whisperft.client import FineTune

    ft = FineTune.load("examples/demo.yaml").with_values({"spec.training.maxSteps": 20})
    run = ft.run_local()                        # local Ray, as `whisperft train`
    print(run.summary.test_wer_before, "->", run.summary.test_wer_after, run.model_dir)

    job = ft.submit(namespace="speech")         # the cluster in your kubeconfig
    job.watch()                                 # a progress bar until it finishes
    print(job.summary())

Nothing here is a second implementation: a FineTune holds the typed resource
(`whisperft.operator.api.resource.WhisperFineTune`), a local run goes through
`whisperft.trainer.main.run`, and a cluster run is the resource the operator
reconciles, read back through its `status`. Only torch-free modules are
imported at the top, so submitting and watching need no trainer stack.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whisperft import names
from whisperft.operator.api.phase import Phase
from whisperft.operator.api.resource import (
    SpecError,
    WhisperFineTune,
    apply_overrides,
    dump_yaml,
    load_resource_file,
    parse_resource,
    set_field,
)
from whisperft.operator.api.spec import WhisperFineTuneSpec
from whisperft.operator.api.status import WhisperFineTuneStatus
from whisperft.operator.planning.admission import language_problem

if TYPE_CHECKING:
    from whisperft.trainer.config import TrainConfig


class ClientError(RuntimeError):
    """A cluster call that failed, with the resource and the API's reason named."""


@dataclass(frozen=True)
class Summary:
    """A run's headline numbers: WERs as fractions, each naming its split."""

    phase: str | None
    step: int | None
    total_steps: int | None
    test_wer_before: float | None
    test_wer_after: float | None
    eval_wer: float | None
    best_eval_wer: float | None
    best_step: int | None
    message: str | None = None

    @classmethod
    def from_results(cls, results: Mapping[str, Any]) -> Summary:
        return cls(
            phase=Phase.SUCCEEDED.value,
            step=results.get("steps"),
            total_steps=results.get("steps"),
            test_wer_before=results.get("test_wer_before"),
            test_wer_after=results.get("test_wer_after"),
            eval_wer=results.get("eval_wer"),
            best_eval_wer=results.get("best_eval_wer"),
            best_step=results.get("best_step"),
        )

    @classmethod
    def from_status(cls, status: WhisperFineTuneStatus | None) -> Summary:
        s = status or WhisperFineTuneStatus()
        p = s.progress
        return cls(
            phase=s.phase.value if s.phase else None,
            step=p.step if p else None,
            total_steps=p.total_steps if p else None,
            test_wer_before=p.test_wer_before if p else None,
            test_wer_after=p.test_wer_after if p else None,
            eval_wer=p.eval_wer if p else None,
            best_eval_wer=p.best_eval_wer if p else None,
            best_step=p.best_step if p else None,
            message=s.message,
        )

    def __str__(self) -> str:
        def pct(x: float | None) -> str:
            return "?" if x is None else f"{x:.2%}"

        return (
            f"{self.phase or 'unknown'}: step {self.step or 0}/{self.total_steps or '?'}, "
            f"test WER {pct(self.test_wer_before)} -> {pct(self.test_wer_after)}"
        )


@dataclass(frozen=True)
class LocalRun:
    """A finished local run: its outputs on this machine."""

    config: TrainConfig
    results: dict[str, Any]

    @property
    def output_dir(self) -> Path:
        return Path(self.config.runtime.output_dir).resolve()

    @property
    def model_dir(self) -> Path:
        """The fine-tuned model (HF format): `whisperft evaluate --model` takes it."""
        return Path(self.results["final_model"])

    @property
    def summary(self) -> Summary:
        return Summary.from_results(self.results)


@dataclass(frozen=True)
class FineTune:
    """One WhisperFineTune resource, validated as the API server and the operator would."""

    resource: WhisperFineTune

    def __post_init__(self) -> None:
        refused = language_problem(self.resource.spec)
        if refused:
            raise SpecError(f"{self.name}: {refused}")

    # -- building ---------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> FineTune:
        """A WhisperFineTune file, with `KEY=VALUE` overrides as `whisperft train --set` takes."""
        return cls(load_resource_file(path, overrides))

    @classmethod
    def from_dict(cls, body: Mapping[str, Any], *, source: str = "resource") -> FineTune:
        return cls(parse_resource(dict(body), source=source))

    @classmethod
    def build(cls, name: str, *, namespace: str = "default", **spec: Any) -> FineTune:
        """From spec sections as keyword arguments (camelCase or snake_case keys), e.g.
        `FineTune.build("demo", dataset={"path": "bundled:en"}, training={"maxSteps": 40},
        checkpoints={"size": "2Gi"})`."""
        return cls.from_dict(
            {
                "apiVersion": names.API_VERSION,
                "kind": names.KIND,
                "metadata": {"name": name, "namespace": namespace},
                "spec": {k: _wire(v) for k, v in spec.items()},
            },
            source=name,
        )

    def with_values(self, values: Mapping[str, Any]) -> FineTune:
        """A copy with dotted wire-form fields set, e.g. {"spec.training.maxSteps": 20}."""
        body = self.resource.to_wire()
        for key, value in values.items():
            set_field(body, key, _wire(value))
        return FineTune.from_dict(body, source=self.name)

    def with_overrides(self, overrides: list[str]) -> FineTune:
        """A copy with `KEY=VALUE` strings applied (YAML-typed values, as on the command line)."""
        return FineTune.from_dict(apply_overrides(self.resource.to_wire(), overrides))

    # -- views --------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.resource.metadata.name

    @property
    def namespace(self) -> str:
        return self.resource.metadata.namespace

    @property
    def spec(self) -> WhisperFineTuneSpec:
        return self.resource.spec

    def to_yaml(self) -> str:
        """The file `kubectl apply -f` takes."""
        return dump_yaml(self.resource.to_wire())

    def local_config(self) -> TrainConfig:
        """The run `whisperft train` would start here (raises SpecError when it cannot)."""
        from whisperft.trainer.config import TrainConfig
        from whisperft.trainer.local_runtime import local_runtime

        return TrainConfig.build(self.resource, local_runtime(self.resource))

    # -- running --------------------------------------------------------------------
    def run_local(self, *, progress: bool = True) -> LocalRun:
        """Fine-tune on a local Ray, exactly as `whisperft train FILE` does."""
        from whisperft.trainer.main import run

        cfg = self.local_config()
        return LocalRun(cfg, run(cfg, progress=progress))

    def submit(
        self,
        *,
        namespace: str | None = None,
        kubeconfig: str | Path | None = None,
        context: str | None = None,
    ) -> ClusterRun:
        """Create the resource on the cluster (like `kubectl create -f`); the operator takes over."""
        api = _custom_objects(kubeconfig, context)
        ns = namespace or self.namespace
        body = self.resource.to_wire()
        body["metadata"]["namespace"] = ns
        try:
            api.create_namespaced_custom_object(names.GROUP, names.VERSION, ns, names.PLURAL, body)
        except Exception as exc:
            raise ClientError(f"{ns}/{self.name}: could not create: {_api_reason(exc)}") from None
        return ClusterRun(self.name, ns, api)


class ClusterRun:
    """A WhisperFineTune on a cluster, read through its status."""

    def __init__(self, name: str, namespace: str, api: Any) -> None:
        self.name, self.namespace, self._api = name, namespace, api

    @classmethod
    def attach(
        cls,
        name: str,
        *,
        namespace: str = "default",
        kubeconfig: str | Path | None = None,
        context: str | None = None,
    ) -> ClusterRun:
        """An existing resource (e.g. one applied by GitOps)."""
        return cls(name, namespace, _custom_objects(kubeconfig, context))

    def get(self) -> dict[str, Any]:
        try:
            obj: dict[str, Any] = self._api.get_namespaced_custom_object(
                names.GROUP, names.VERSION, self.namespace, names.PLURAL, self.name
            )
        except Exception as exc:
            raise ClientError(f"{self.namespace}/{self.name}: {_api_reason(exc)}") from None
        return obj

    def status(self) -> WhisperFineTuneStatus:
        return WhisperFineTuneStatus.model_validate(self.get().get("status") or {})

    def summary(self) -> Summary:
        return Summary.from_status(self.status())

    def watch(
        self,
        *,
        timeout_seconds: float = 24 * 3600,
        poll_seconds: float = 5.0,
        progress: bool = True,
        on_update: Callable[[WhisperFineTuneStatus], None] | None = None,
    ) -> WhisperFineTuneStatus:
        """Follow the status until Succeeded or Failed (a bar in a terminal or notebook).

        Raises TimeoutError when `timeout_seconds` pass first; the resource runs on.
        """
        bar = _Bar(self.name) if progress else None
        deadline = time.monotonic() + timeout_seconds
        try:
            while True:
                status = self.status()
                if on_update is not None:
                    on_update(status)
                if bar is not None:
                    bar.show(status)
                if status.phase is not None and status.phase.is_terminal:
                    return status
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{self.namespace}/{self.name} still {status.phase} after "
                        f"{timeout_seconds:g} s"
                    )
                time.sleep(poll_seconds)
        finally:
            if bar is not None:
                bar.close()

    def delete(self) -> None:
        try:
            self._api.delete_namespaced_custom_object(
                names.GROUP, names.VERSION, self.namespace, names.PLURAL, self.name
            )
        except Exception as exc:
            raise ClientError(
                f"{self.namespace}/{self.name}: could not delete: {_api_reason(exc)}"
            ) from None

    def model_location(self) -> str | None:
        """Where the finished model is: `<claim>:<path>` on the checkpoint claim, the
        path the trainer reported it exported to (None until it has)."""
        s = self.status()
        if not s.checkpoint_claim or s.model is None:
            return None
        return f"{s.checkpoint_claim}:{s.model.path}"


class _Bar:
    """Steps done as a tqdm bar (tqdm.auto: a widget in notebooks), or lines without tqdm."""

    def __init__(self, name: str) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self._tqdm: Any = None
        else:
            self._tqdm = tqdm(desc=name, unit="step", total=None)
        self._last = ""

    def show(self, status: WhisperFineTuneStatus) -> None:
        summary = Summary.from_status(status)
        if self._tqdm is None:
            line = str(summary)
            if line != self._last:
                print(line, flush=True)
                self._last = line
            return
        if summary.total_steps and self._tqdm.total != summary.total_steps:
            self._tqdm.total = summary.total_steps
        if summary.step is not None and summary.step > self._tqdm.n:
            self._tqdm.update(summary.step - self._tqdm.n)
        post = {"phase": summary.phase or "?"}
        if summary.eval_wer is not None:
            post["eval WER"] = f"{summary.eval_wer:.1%}"
        self._tqdm.set_postfix(post, refresh=True)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()


def _wire(value: Any) -> Any:
    """Typed API objects as their wire form; everything else as given."""
    to_wire = getattr(value, "to_wire", None)
    return to_wire() if callable(to_wire) else value


def _custom_objects(kubeconfig: str | Path | None, context: str | None) -> Any:
    from kubernetes import client, config

    if kubeconfig is None and context is None:
        try:
            config.load_incluster_config()
            return client.CustomObjectsApi()
        except config.ConfigException:
            pass
    api_client = config.new_client_from_config(
        config_file=str(kubeconfig) if kubeconfig else None, context=context
    )
    return client.CustomObjectsApi(api_client)


def _api_reason(exc: Exception) -> str:
    """The API server's own message (e.g. a CEL rule's), not a wall of HTTP headers."""
    import json

    body = getattr(exc, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body)
        except (TypeError, ValueError):
            return str(body)
    return str(exc)
