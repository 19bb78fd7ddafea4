"""whisperft: fine-tune Whisper on Kubernetes with KubeRay, Ray Train and DeepSpeed."""

__version__ = "0.1.0"
