"""Training on the speech, not the padding: frame counts, and an encoder that is
Whisper's own on a full window and accepts a shorter one."""

from __future__ import annotations

import pytest

from whisperft.trainer.audio_context import context_frames

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("longest", "margin", "frames"),
    [(2.3, 1.0, 400), (3.0, 0.0, 300), (0.2, 0.0, 100), (29.5, 1.0, 3000), (45.0, 1.0, 3000)],
)
def test_frames_are_whole_seconds_within_the_window(
    longest: float, margin: float, frames: int
) -> None:
    assert context_frames(longest, margin, 3000) == frames
    assert frames % 2 == 0  # the stride-2 conv halves it exactly


def _tiny_whisper():  # type: ignore[no-untyped-def]
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    cfg = WhisperConfig(
        vocab_size=64, num_mel_bins=8, encoder_layers=2, decoder_layers=1, d_model=16,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_source_positions=50, max_target_positions=16,
        decoder_start_token_id=1, pad_token_id=0, eos_token_id=2,
    )  # fmt: skip
    return WhisperForConditionalGeneration(cfg).eval()


def test_full_window_is_whispers_own_and_a_short_one_is_accepted() -> None:
    import torch

    from whisperft.trainer.audio_context import ContextEncoder, allow_short_inputs

    model = _tiny_whisper()
    full = torch.randn(3, 8, 100)  # the window: 50 positions x stride 2
    with torch.no_grad():
        expected = model.model.encoder(full).last_hidden_state
        with pytest.raises(ValueError, match="expects the mel input features to be of length"):
            model.model.encoder(full[..., :40])
        names = [n for n, _ in model.named_parameters()]
        allow_short_inputs(model)
        assert isinstance(model.model.encoder, ContextEncoder)
        assert [n for n, _ in model.named_parameters()] == names  # checkpoints unchanged
        assert torch.equal(model.model.encoder(full).last_hidden_state, expected)
        short = model.model.encoder(full[..., :40]).last_hidden_state
        assert short.shape == (3, 20, 16)
        # A short input trains end to end: loss and gradients through the whole encoder.
    model.train()
    out = model(
        input_features=full[..., :40],
        decoder_input_ids=torch.tensor([[1, 5, 6]] * 3),
        labels=torch.tensor([[5, 6, 2]] * 3),
    )
    out.loss.backward()
    assert model.model.encoder.conv1.weight.grad is not None
    with pytest.raises(ValueError, match="the window is 100"):
        model.model.encoder(torch.randn(1, 8, 120))
