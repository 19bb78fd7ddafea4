"""Pure sizing: how big a Whisper is, and whether a training plan fits a GPU before any is allocated."""
