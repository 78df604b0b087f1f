"""Importing runs from other trackers; today the Parquet export of ``neptune-exporter``.

>>> from despina.importer import import_neptune_export
>>> report = import_neptune_export("exports/data", "exports/files")  # doctest: +SKIP

Format and rules: ``spec/exporter-format.md``. The command line is
``despina import neptune-export DIR``.
"""

from __future__ import annotations

from despina.importer.neptune_export import ImportProgress, import_neptune_export
from despina.importer.reader import ExportFormatError
from despina.importer.report import ImportReport, Issue, RunReport, SkippedRun

__all__ = [
    "ExportFormatError",
    "ImportProgress",
    "ImportReport",
    "Issue",
    "RunReport",
    "SkippedRun",
    "import_neptune_export",
]
