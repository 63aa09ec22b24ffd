"""Storage paths of a training: the storage package's one parser (im2txt_storage.paths), re-exported.

The storage commands own the `ufile://` / `pvc://` format; the operator uses the same code, so a path the
operator accepts is one the fetch and sync commands accept too.
"""

from im2txt_storage.paths import EXPECTED, PvcPath, StoragePath, UFilePath, parse_path

__all__ = ["EXPECTED", "PvcPath", "StoragePath", "UFilePath", "parse_path"]
