"""report layer of caspian: what a scenario run measured, as JSON, JUnit XML, plots and console tables.

`Report` (with `AssertionResult` and `TimelineMark`) is plain data; the
writers and the console only read it. matplotlib is imported only by
`emulator.report.plots` (and `write_all`, which calls it).
"""

from emulator.report.report import AssertionResult, Report, TimelineMark, collect_versions, utc_now

__all__ = ["AssertionResult", "Report", "TimelineMark", "collect_versions", "utc_now"]
