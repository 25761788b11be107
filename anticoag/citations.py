"""Sources as people read them: a short citation on the page, the reference's full citation on hover.

Rules cite the reference's short names ("AHA2011 (IIa); SEED002"); a clinician wants "Saposnik et al.,
Stroke 2011" with the full citation one hover away. The short citations are the author and journal-year
of the reference's own source list (``anticoag.rules.SOURCES``, the clinical reference's "Sources"),
shortened, never new words.
"""

from __future__ import annotations

import re

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from .rules import SOURCES

#: Short name → short citation (author or trial, journal and year, from the full citation in SOURCES).
SHORT_CITATIONS: dict[str, str] = {
    "AHA2011": "Saposnik et al., Stroke 2011",
    "AHA2024": "Saposnik et al., Stroke 2024",
    "EFNS2010": "Einhäupl et al., Eur J Neurol 2010",
    "ESO2017": "Ferro et al., Eur J Neurol 2017",
    "CSBP2024": "Canadian Stroke Best Practice 2024",
    "RESPECT-CVT": "RESPECT-CVT, JAMA Neurol 2019",
    "ACTION-CVT": "ACTION-CVT, Stroke 2022",
    "CHEST2012": "Holbrook et al., Chest 2012",
    "ROSENDAAL1993": "Rosendaal et al., Thromb Haemost 1993",
    "EHRA": "EHRA practical guide on NOAC use",
    "SEED000": "Seed document 000",
    "SEED001": "Seed document 001",
    "SEED002": "Seed document 002",
    "CLINIC": "Clinic practice",
}


def _pattern() -> re.Pattern[str]:
    names = sorted(SOURCES, key=len, reverse=True)  # RESPECT-CVT before a shorter name it contains
    return re.compile(r"(?<![\w-])(" + "|".join(re.escape(name) for name in names) + r")(?![\w-])")


def short_citation(name: str) -> str:
    return SHORT_CITATIONS.get(name, name)


def cite_html(source: str | None) -> SafeString:
    """``source`` with each short name as ``<abbr title="full citation">short citation</abbr>``; the rest
    (grades such as "(I-C)", "§3.2", "[verify]") is kept as written, escaped."""
    if not source:
        return mark_safe("")
    parts: list[str] = []
    position = 0
    for match in _pattern().finditer(source):
        parts.append(escape(source[position : match.start()]))
        name = match.group(1)
        parts.append(
            format_html(
                '<abbr class="clinic-cite" title="{} ({})">{}</abbr>', SOURCES[name], name, short_citation(name)
            )
        )
        position = match.end()
    parts.append(escape(source[position:]))
    return mark_safe("".join(parts))  # every piece above is escaped or built by format_html
