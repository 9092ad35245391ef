"""The collection report: one self-contained HTML page (`artenc report`, end of `artenc demo`)."""

from artenc.report.report import SECTIONS, ReportOptions, write_report

__all__ = ["SECTIONS", "ReportOptions", "write_report"]
