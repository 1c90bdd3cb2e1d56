"""Image data for trials: a source read, decoded once per machine, split into train and val.

Private modules, in the order the data flows: `_synthetic` (the synthetic colour set and its
`synthetic:` spec), `_sources` (a source's images listed and checked without decoding:
ImageFolder dirs, JSONL manifests), `_cache` (the shared read-only cache file), `_load`
(decoding, the cache layout, `load_dataset` -> `DatasetSplits`).

Names are imported on first use (PEP 562) from the module that defines them: `_synthetic` and
`_sources` import no torch, so `check_data_source` and the synthetic set's names load without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__all__ = [
    "COLOUR_CLASSES",
    "IMAGE_EXTENSIONS",
    "DatasetSplits",
    "cache_dir",
    "check_data_source",
    "check_images_decode",
    "clear_memory_cache",
    "describe",
    "load_dataset",
    "make_synthetic",
]

if TYPE_CHECKING:
    from ._load import (
        DatasetSplits,
        cache_dir,
        check_images_decode,
        clear_memory_cache,
        describe,
        load_dataset,
    )
    from ._sources import IMAGE_EXTENSIONS, check_data_source
    from ._synthetic import COLOUR_CLASSES, make_synthetic

#: public name -> the private module that defines it
_EXPORTS = {
    **dict.fromkeys(("COLOUR_CLASSES", "make_synthetic"), "_synthetic"),
    **dict.fromkeys(("IMAGE_EXTENSIONS", "check_data_source"), "_sources"),
    **dict.fromkeys(("DatasetSplits", "cache_dir", "check_images_decode", "clear_memory_cache",
                     "describe", "load_dataset"), "_load"),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
