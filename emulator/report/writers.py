"""A report on disk: report.json, junit.xml, the plots and index.html (emulator.report.html)."""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from emulator.report.report import Report

#: where `caspian run` writes a report unless told (--report DIR)
REPORTS_DIR = "reports"
#: a report directory's name: lowercase letters, digits, dot, dash, underscore
_NOT_SLUG = re.compile(r"[^a-z0-9._-]+")
#: longest slug kept (a scenario name is at most 64 characters)
SLUG_MAX_CHARS = 64
JSON_FILE = "report.json"
JUNIT_FILE = "junit.xml"
#: the JUnit test case that fails when the run itself had errors (a traffic tool failed ...)
ERRORS_CASE = "errors"
#: characters XML 1.0 cannot carry at all (a tool's stderr may hold ANSI escapes, NULs ...)
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(text: str) -> str:
    """Text made safe for XML: each character XML cannot hold becomes U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def write_json(report: Report, path: str | Path) -> str:
    """Every metric, assertion (measured vs bound), mark, series, counter, version and the scenario text."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.to_dict(), indent=2, allow_nan=False, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
    return str(path)


def junit_tree(report: Report) -> ET.ElementTree:
    """The JUnit XML of a report: one testsuite, one testcase per assertion, plus "errors"."""
    classname = _x(f"caspian.{report.scenario}")
    n_failures = len(report.failed) + (1 if report.errors else 0)
    n_tests = len(report.assertions) + 1
    counts = {"tests": str(n_tests), "failures": str(n_failures), "errors": "0",
              "skipped": str(len(report.inconclusive)),
              "time": f"{report.wall_s:.3f}"}
    root = ET.Element("testsuites", {"name": "caspian", **counts})
    suite = ET.SubElement(root, "testsuite",
                          {"name": _x(report.scenario), **counts, "timestamp": _x(report.started_at)})
    properties = ET.SubElement(suite, "properties")
    for name, value in [("seed", str(report.seed)), ("source", report.source), ("started_at", report.started_at),
                        ("duration_s", f"{report.duration_s:g}"), ("verdict", report.verdict),
                        *((f"version.{k}", v) for k, v in report.versions.items()),
                        *((f"fidelity.{k}", _property_value(v)) for k, v in report.fidelity.items()
                          if not isinstance(v, (list, dict)))]:
        ET.SubElement(properties, "property", {"name": _x(name), "value": _x(value)})
    for result in report.assertions:
        case = ET.SubElement(suite, "testcase", {"classname": classname, "name": _x(result.name), "time": "0"})
        if result.line:
            case.set("file", _x(report.source))
            case.set("line", str(result.line))
        if result.verdict == "inconclusive":
            # CI shows it as skipped, with the reason: neither a pass nor the network's fault
            ET.SubElement(case, "skipped", {"message": _x(f"inconclusive: {result.reason}")})
        elif not result.passed:
            failure = ET.SubElement(case, "failure", {"message": _x(result.message()), "type": "AssertionFailed"})
            failure.text = _x(f"{result.metric}: {result.message()}" + (
                f" ({report.source}:{result.line})" if result.line else ""))
    case = ET.SubElement(suite, "testcase", {"classname": classname, "name": ERRORS_CASE, "time": "0"})
    if report.errors:
        first = report.errors[0] + (f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else "")
        failure = ET.SubElement(case, "failure", {"message": _x(first), "type": "RunError"})
        failure.text = _x("\n".join(report.errors))
    if report.scenario_text:
        ET.SubElement(suite, "system-out").text = _x(report.scenario_text)
    ET.indent(root)
    return ET.ElementTree(root)


def _property_value(value: Any) -> str:
    """A JUnit property's text: numbers to 6 significant digits, None as 'n/a'."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_junit(report: Report, path: str | Path) -> str:
    """JUnit XML for CI: a failed assertion is a failed test case named by its metric and bound."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_tree(report).write(path, encoding="utf-8", xml_declaration=True)
    return str(path)


def write_all(report: Report, directory: str | Path) -> dict[str, str]:
    """report.json, junit.xml, the plots, the topology picture and index.html into
    `directory`; {"json": path, "junit": path, "delay": path, ..., "html": path}."""
    from emulator.report.plots import PLOT_FILES, write_plots

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = {"json": write_json(report, directory / JSON_FILE), "junit": write_junit(report, directory / JUNIT_FILE)}
    by_file = {name: kind for kind, name in PLOT_FILES.items()}
    for path in write_plots(report, directory):
        written[by_file[Path(path).name]] = path
    if report.topology.get("nodes"):
        from emulator.report.topology_view import TOPOLOGY_PNG, Picture, write_png

        written["topology"] = write_png(Picture.of(report.topology), directory / TOPOLOGY_PNG)
    from emulator.report.html import write_html

    written["html"] = write_html(report, directory, written)
    return written


def report_slug(name: str) -> str:
    """A scenario name made into one safe directory name.

    Only [a-z0-9._-]: letters are lowercased, every other run of characters
    (a slash, a space, a control character) becomes one dash, runs of dots
    one dot, and dots and dashes are stripped from both ends, so the slug is
    never absolute, never `.` or `..`, never hidden. A name with nothing left
    (`..`, `/`, all non-ASCII) becomes `scenario-` and 8 hex digits of its
    hash, so different such names still get different directories.
    """
    slug = _NOT_SLUG.sub("-", name.lower())
    slug = re.sub(r"\.{2,}", ".", slug)
    slug = re.sub(r"-{2,}", "-", slug)
    slug = slug[:SLUG_MAX_CHARS].strip(".-")
    if not slug:
        slug = "scenario-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return slug


def default_report_dir(name: str) -> Path:
    """`reports/<slug of the scenario's name>`, relative to the working directory."""
    return Path(REPORTS_DIR) / report_slug(name)
