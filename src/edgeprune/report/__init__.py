"""report.json (stable keys, see docs/report.md) and the text tables printed on screen."""

from edgeprune.report.json import build_report, model_block, write_report
from edgeprune.report.table import format_table

__all__ = ["build_report", "format_table", "model_block", "write_report"]
