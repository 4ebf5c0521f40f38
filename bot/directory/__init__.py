"""The regulator's provider directory: read the monthly CSV, search it, label results.

Pure functions and an immutable in-memory index; storage (`storage/`) keeps the parsed
locations and the service builds one `DirectoryIndex` per process from them.
"""

from bot.directory.csv_format import (
    DirectoryFormatError,
    ParsedDirectory,
    RowProblem,
    parse_directory_csv,
)
from bot.directory.describe import describe
from bot.directory.search import DirectoryIndex, DirectoryMatch
from bot.directory.service_types import SERVICE_TYPE_LABELS

__all__ = [
    "SERVICE_TYPE_LABELS",
    "DirectoryFormatError",
    "DirectoryIndex",
    "DirectoryMatch",
    "ParsedDirectory",
    "RowProblem",
    "describe",
    "parse_directory_csv",
]
