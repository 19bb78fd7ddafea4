import itertools

import pytest
from trainconfig_factory import train_config

from whisperft.trainer.deepspeed_config import (
    build_deepspeed_config,
    lr_schedule,
    resolve_precision,
    total_steps,
)

pytestmark = pytest.mark.unit


def cfg(
    stage: int = 2,
    offload_optimizer: bool = False,
    offload_params: bool = False,
    **training: object,
):  # type: ignore[no-untyped-def]
    return train_config(
        training={"maxSteps": 100, **training},
        stage=stage,
        offload_optimizer=offload_optimizer,
        offload_params=offload_params,
    )


def test_batch_arithmetic_and_cpu_optimizer() -> None:
    c = build_deepspeed_config(
        cfg(batchSizePerWorker=4, gradAccum=3),
        world_size=2,
        precision="fp32",
        cuda=False,
    )
    assert c["train_batch_size"] == 24
    assert c["train_micro_batch_size_per_gpu"] == 4 and c["gradient_accumulation_steps"] == 3
    assert c["optimizer"]["params"]["torch_adam"] is True  # FusedAdam needs CUDA
    assert c["zero_optimization"]["stage"] == 2
    assert not c["bf16"]["enabled"] and not c["fp16"]["enabled"]
    # AdamW as torch and the Hugging Face recipe default it, unless the spec says otherwise
    params = c["optimizer"]["params"]
    assert (params["betas"], params["eps"]) == ([0.9, 0.999], 1e-8)
    tuned = build_deepspeed_config(
        cfg(adamBeta1=0.8, adamBeta2=0.98, adamEpsilon=1e-6),
        world_size=1,
        precision="fp32",
        cuda=False,
    )["optimizer"]["params"]
    assert (tuned["betas"], tuned["eps"]) == ([0.8, 0.98], 1e-6)


def test_gpu_offload_and_stage3() -> None:
    c = build_deepspeed_config(
        cfg(stage=3, offload_optimizer=True, offload_params=True),
        world_size=8,
        precision="bf16",
        cuda=True,
    )
    z = c["zero_optimization"]
    assert z["offload_optimizer"]["device"] == "cpu" and z["offload_param"]["device"] == "cpu"
    assert z["stage3_gather_16bit_weights_on_model_save"] is True
    assert c["bf16"]["enabled"] is True
    assert "torch_adam" not in c["optimizer"]["params"]  # DeepSpeedCPUAdam on GPU hosts


def test_schedule_is_ours_not_deepspeeds() -> None:
    c = build_deepspeed_config(cfg(), world_size=1, precision="fp32", cuda=False)
    assert "scheduler" not in c  # DeepSpeed's Warmup*LR hold min LR for two steps


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_first_step_trains_peak_at_warmup_last_step_still_moves(schedule: str) -> None:
    f = lr_schedule(cfg(lrSchedule=schedule, warmupSteps=4), steps=20)
    factors = [f(done) for done in range(20)]  # one per optimizer step, 1..20
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0  # first step after warm-up is at the peak
    assert all(0.0 < x <= 1.0 for x in factors)
    if schedule == "constant":
        assert set(factors[4:]) == {1.0}
    else:
        assert all(a >= b for a, b in itertools.pairwise(factors[4:]))
        assert factors[-1] < 0.1


def test_warmup_is_clamped_below_the_run_length() -> None:
    f = lr_schedule(cfg(warmupSteps=500), steps=50)
    assert f(48) == 1.0 and f(0) == pytest.approx(1 / 49)
    two = lr_schedule(cfg(warmupSteps=1), steps=2)
    assert two(0) == 1.0 and two(1) > 0.0  # a 2-step run trains on both steps


def test_overrides_merge_last() -> None:
    c = build_deepspeed_config(
        cfg(
            stage=1,
            deepspeed={
                "overrides": {
                    "zero_optimization": {"reduce_bucket_size": 123},
                    "wall_clock_breakdown": True,
                },
            },
        ),
        world_size=1,
        precision="fp32",
        cuda=False,
    )
    assert c["zero_optimization"] == {
        **c["zero_optimization"],
        "stage": 1,
        "reduce_bucket_size": 123,
    }
    assert c["wall_clock_breakdown"] is True


def test_precision_resolution() -> None:
    # CPU: bf16 is autocast over fp32 weights; auto takes it only where the CPU has bf16 hardware.
    assert resolve_precision(cfg(precision="bf16"), cuda=False, bf16_supported=False) == "amp-bf16"
    assert resolve_precision(cfg(precision="auto"), cuda=False, bf16_supported=False) == "fp32"
    assert (
        resolve_precision(cfg(precision="auto"), cuda=False, bf16_supported=False, cpu_bf16=True)
        == "amp-bf16"
    )
    assert (
        resolve_precision(cfg(precision="fp32"), cuda=False, bf16_supported=False, cpu_bf16=True)
        == "fp32"
    )
    assert (
        resolve_precision(cfg(precision="fp16"), cuda=False, bf16_supported=False, cpu_bf16=True)
        == "fp32"
    )
    # A GPU never gets autocast: DeepSpeed's own 16-bit modes.
    assert resolve_precision(cfg(precision="bf16"), cuda=True, bf16_supported=True) == "bf16"
    assert resolve_precision(cfg(precision="auto"), cuda=True, bf16_supported=True) == "bf16"
    assert resolve_precision(cfg(precision="auto"), cuda=True, bf16_supported=False) == "fp16"
    with pytest.raises(ValueError, match="no bf16 support"):
        resolve_precision(cfg(precision="bf16"), cuda=True, bf16_supported=False)


def test_total_steps_from_epochs() -> None:
    c = train_config(training={"epochs": 2, "batchSizePerWorker": 5})
    assert total_steps(c, n_train=100, world_size=2) == 20
    assert total_steps(cfg(), n_train=1, world_size=64) == 100


def test_cpu_amp_bf16_is_deepspeed_torch_autocast_over_fp32() -> None:
    c = build_deepspeed_config(cfg(), world_size=1, precision="amp-bf16", cuda=False)
    assert c["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    assert c["bf16"] == {"enabled": False} and c["fp16"]["enabled"] is False
    for p in ("fp32", "bf16", "fp16"):
        assert "torch_autocast" not in build_deepspeed_config(
            cfg(), world_size=1, precision=p, cuda=p != "fp32"
        )
