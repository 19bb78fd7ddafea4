"""The Whisper fine-tuning program: runs in Ray pods and locally. Heavy imports stay inside functions."""
