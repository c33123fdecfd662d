"""The `capture:` section: links recorded to pcapng in the report directory for the whole run."""

from __future__ import annotations

import yaml

from emulator.scenario.builder import Builder, existing_link
from emulator.scenario.links import read_direction
from emulator.scenario.reader import Document, is_null, join_path, kind_of
from emulator.scenario.scenario import CaptureSpec

#: Keys of a `capture:` item written as a mapping (a plain item is a link name).
CAPTURE_FIELDS: tuple[str, ...] = ("link", "direction")


def read_capture(doc: Document, node: yaml.Node, path: str, out: Builder) -> None:
    """`capture: [LINK, {link: LINK, direction: NODE}, ...]`: links captured to pcapng in the report directory."""
    if is_null(node):
        return
    seen: set[str] = set()
    for i, item in enumerate(doc.sequence(node, path)):
        here = f"{path}[{i}]"
        if kind_of(item) == "mapping":
            fields = {key: value for key, _, value in doc.mapping(item, here, CAPTURE_FIELDS)}
            if "link" not in fields:
                doc.fail(item, here, "a capture item needs a link", "write e.g. {link: aktau-sumgait}")
            link = existing_link(doc, fields["link"], join_path(here, "link"), out)
            direction = read_direction(doc, fields["direction"], join_path(here, "direction"), link) \
                if "direction" in fields else "both"
        else:
            link = existing_link(doc, item, here, out)
            direction = "both"
        if link.name in seen:
            doc.fail(item, here, f"link {link.name!r} is captured twice", "list each link once")
        seen.add(link.name)
        out.capture.append(CaptureSpec(link.name, direction))
