"""Object storage for the trainer: s3:// and gs:// locations through pyarrow.fs.

- uri.py: parsing (pure); fs.py: filesystems from the environment (never the spec);
- retry.py / errors.py: transient errors retried with capped backoff, the rest one
  StorageError naming the URI and the principal;
- objects.py: a Store (read, write, list, stream, counted bytes);
- commit.py: directories uploaded staged-then-committed (marker written last);
- cache.py: a bounded LRU disk cache for lazily read objects;
- dataset.py: a bucket dataset seen by the data readers (only what a split needs).
See docs/object-storage.md.
"""

from whisperft.trainer.storage.errors import StorageError, classify
from whisperft.trainer.storage.uri import StorageURI, URIError, is_uri, parse_uri

__all__ = ["StorageError", "StorageURI", "URIError", "classify", "is_uri", "parse_uri"]
