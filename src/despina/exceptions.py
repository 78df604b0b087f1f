"""Exceptions of the logging API, with the class names of ``neptune_scale.exceptions``.

Store-side ingest codes map to these classes (``CODE_TO_EXCEPTION``); they reach the user through
``Run``'s ``on_error_callback`` / ``on_warning_callback``, or are raised in the caller's thread
where the logging spec says so (``NeptuneProjectNotProvided``, ``NeptuneUnableToLogData`` with
``NEPTUNE_LOG_FAILURE_ACTION=raise``).
"""

from __future__ import annotations

from despina.errors import DespinaError

__all__ = [
    "CODE_TO_EXCEPTION",
    "NeptuneApiTokenNotProvided",
    "NeptuneAttributePathEmpty",
    "NeptuneAttributePathExceedsSizeLimit",
    "NeptuneAttributePathInvalid",
    "NeptuneAttributePathNonWritable",
    "NeptuneAttributeTypeMismatch",
    "NeptuneAttributeTypeUnsupported",
    "NeptuneConnectionLostError",
    "NeptuneDatabaseConflict",
    "NeptuneFileMetadataExceedsSizeLimit",
    "NeptuneHistogramBinEdgesContainNaN",
    "NeptuneHistogramBinEdgesNotIncreasing",
    "NeptuneHistogramTooManyBins",
    "NeptuneHistogramValuesLengthMismatch",
    "NeptunePreviewStepNotAfterLastCommittedStep",
    "NeptuneProjectError",
    "NeptuneProjectInvalidName",
    "NeptuneProjectNotFound",
    "NeptuneProjectNotProvided",
    "NeptuneRunConflicting",
    "NeptuneRunDuplicate",
    "NeptuneRunError",
    "NeptuneRunForkParentNotFound",
    "NeptuneRunInvalidCreationParameters",
    "NeptuneRunNotFound",
    "NeptuneScaleError",
    "NeptuneScaleWarning",
    "NeptuneSeriesPointDuplicate",
    "NeptuneSeriesStepNonIncreasing",
    "NeptuneSeriesStepNotAfterForkPoint",
    "NeptuneSeriesStepTooLarge",
    "NeptuneSeriesTimestampDecreasing",
    "NeptuneStringSetExceedsSizeLimit",
    "NeptuneStringValueExceedsSizeLimit",
    "NeptuneSynchronizationStopped",
    "NeptuneUnableToLogData",
    "NeptuneUnexpectedError",
]


class NeptuneScaleError(DespinaError):
    """Base of the logging errors."""


class NeptuneScaleWarning(Warning):
    """Base of the logging warnings (the data was kept or the item was harmlessly ignored)."""


class NeptuneUnableToLogData(NeptuneScaleError, ValueError):
    """A value was dropped; raised only with ``NEPTUNE_LOG_FAILURE_ACTION=raise``."""


class NeptuneProjectNotProvided(NeptuneScaleError, ValueError):
    """No project: pass ``project=`` or set ``DESPINA_PROJECT`` / ``NEPTUNE_PROJECT``."""


class NeptuneApiTokenNotProvided(NeptuneScaleError, ValueError):
    """A server store needs an API token: pass ``api_token=`` or set ``NEPTUNE_API_TOKEN``."""


class NeptuneDatabaseConflict(NeptuneScaleError):
    """A second ``Run`` opened a local queue that belongs to another run."""


class NeptuneSynchronizationStopped(NeptuneScaleError):
    """The background writer stopped; unsent data stays in memory and is reported."""


class NeptuneUnexpectedError(NeptuneScaleError):
    """Something went wrong that is not the caller's fault; the message has the details."""


class NeptuneConnectionLostError(NeptuneScaleError):
    """The server did not answer or refused the token; the data stays queued and is retried."""


class NeptuneProjectError(NeptuneScaleError):
    """A problem with the project."""


class NeptuneProjectNotFound(NeptuneProjectError):
    """The project does not exist."""


class NeptuneProjectInvalidName(NeptuneProjectError):
    """The project name is not ``workspace/project``."""


class NeptuneRunError(NeptuneScaleError):
    """A problem with creating the run."""


class NeptuneRunNotFound(NeptuneRunError):
    """An update arrived for a run that was never created."""


class NeptuneRunInvalidCreationParameters(NeptuneRunError):
    """Run id, experiment name or fork step break a creation rule."""


class NeptuneRunDuplicate(NeptuneScaleWarning):
    """The run existed already; logging resumes into it."""


class NeptuneRunConflicting(NeptuneScaleWarning):
    """The run existed with another fork point or experiment; it was left unchanged."""


class NeptuneRunForkParentNotFound(NeptuneScaleWarning):
    """The fork parent does not exist; the run was created as a root."""


class NeptuneSeriesPointDuplicate(NeptuneScaleWarning):
    """The same point (step and value) was stored already; ignored."""


class NeptuneAttributePathEmpty(NeptuneScaleError):
    """An attribute path was empty."""


class NeptuneAttributePathExceedsSizeLimit(NeptuneScaleError):
    """An attribute path is over 1024 UTF-8 bytes."""


class NeptuneAttributePathInvalid(NeptuneScaleError):
    """An attribute path is not valid UTF-8."""


class NeptuneAttributePathNonWritable(NeptuneScaleError):
    """A write to a read-only ``sys/`` attribute."""


class NeptuneAttributeTypeUnsupported(NeptuneScaleError):
    """A value kind that the target map does not accept."""


class NeptuneAttributeTypeMismatch(NeptuneScaleError):
    """The path exists with another type; types are fixed per path."""


class NeptuneSeriesStepNonIncreasing(NeptuneScaleError):
    """A committed step was not after the series' last step."""


class NeptuneSeriesStepNotAfterForkPoint(NeptuneScaleError):
    """A forked run's own point was not after the fork step."""


class NeptuneSeriesStepTooLarge(NeptuneScaleError):
    """A step was 1e12 or more."""


class NeptuneSeriesTimestampDecreasing(NeptuneScaleError):
    """A timestamp was older than the series' last point."""


class NeptunePreviewStepNotAfterLastCommittedStep(NeptuneScaleError):
    """A preview was not after the last committed step."""


class NeptuneStringValueExceedsSizeLimit(NeptuneScaleError):
    """A string over 64 KB, or a string-series value of 1 MiB or more."""


class NeptuneStringSetExceedsSizeLimit(NeptuneScaleError):
    """A string set over 64 KB."""


class NeptuneFileMetadataExceedsSizeLimit(NeptuneScaleError):
    """File-reference metadata over 4 KB."""


class NeptuneHistogramTooManyBins(NeptuneScaleError):
    """More than 513 bin edges."""


class NeptuneHistogramBinEdgesNotIncreasing(NeptuneScaleError):
    """Bin edges not strictly increasing."""


class NeptuneHistogramBinEdgesContainNaN(NeptuneScaleError):
    """A bin edge was NaN."""


class NeptuneHistogramValuesLengthMismatch(NeptuneScaleError):
    """``len(values) != len(bin_edges) - 1``."""


CODE_TO_EXCEPTION: dict[str, type[Exception]] = {
    "PROJECT_NOT_FOUND": NeptuneProjectNotFound,
    "PROJECT_INVALID_NAME": NeptuneProjectInvalidName,
    "RUN_NOT_FOUND": NeptuneRunNotFound,
    "RUN_INVALID_CREATION_PARAMETERS": NeptuneRunInvalidCreationParameters,
    "RUN_DUPLICATE": NeptuneRunDuplicate,
    "RUN_CONFLICTING": NeptuneRunConflicting,
    "RUN_FORK_PARENT_NOT_FOUND": NeptuneRunForkParentNotFound,
    "SERIES_POINT_DUPLICATE": NeptuneSeriesPointDuplicate,
    "FIELD_PATH_EMPTY": NeptuneAttributePathEmpty,
    "FIELD_PATH_EXCEEDS_SIZE_LIMIT": NeptuneAttributePathExceedsSizeLimit,
    "FIELD_PATH_INVALID": NeptuneAttributePathInvalid,
    "FIELD_PATH_NON_WRITABLE": NeptuneAttributePathNonWritable,
    "FIELD_TYPE_UNSUPPORTED": NeptuneAttributeTypeUnsupported,
    "FIELD_TYPE_CONFLICTING": NeptuneAttributeTypeMismatch,
    "SERIES_STEP_NON_INCREASING": NeptuneSeriesStepNonIncreasing,
    "SERIES_STEP_NOT_AFTER_FORK_POINT": NeptuneSeriesStepNotAfterForkPoint,
    "SERIES_STEP_TOO_LARGE": NeptuneSeriesStepTooLarge,
    "SERIES_TIMESTAMP_DECREASING": NeptuneSeriesTimestampDecreasing,
    "SERIES_PREVIEW_STEP_NOT_AFTER_LAST_COMMITTED_STEP": (
        NeptunePreviewStepNotAfterLastCommittedStep
    ),
    "STRING_VALUE_EXCEEDS_SIZE_LIMIT": NeptuneStringValueExceedsSizeLimit,
    "STRING_SET_EXCEEDS_SIZE_LIMIT": NeptuneStringSetExceedsSizeLimit,
    "FILE_REF_EXCEEDS_SIZE_LIMIT": NeptuneFileMetadataExceedsSizeLimit,
    "HISTOGRAM_TOO_MANY_BINS": NeptuneHistogramTooManyBins,
    "HISTOGRAM_BIN_EDGES_NOT_INCREASING": NeptuneHistogramBinEdgesNotIncreasing,
    "HISTOGRAM_BIN_EDGES_CONTAINS_NAN": NeptuneHistogramBinEdgesContainNaN,
    "HISTOGRAM_VALUES_LENGTH_DOESNT_MATCH_BINS": NeptuneHistogramValuesLengthMismatch,
}
"""Store ingest codes (wire-protocol.md §5.3) and the exception delivered for each."""
