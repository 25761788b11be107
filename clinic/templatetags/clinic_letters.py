"""Template tags of the patient's letters and the dosing decision: tablets drawn in the clinic's colours."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template
from django.utils.html import format_html, format_html_join

register = template.Library()


def _count(value) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


#: Colours with a CSS class (static/clinic/clinic.css); others are drawn white, their name written beside.
KNOWN_COLOURS = frozenset(
    {
        "white",
        "brown",
        "blue",
        "pink",
        "lavender",
        "green",
        "tan",
        "peach",
        "teal",
        "yellow",
        "orange",
        "purple",
        "grey",
    }
)


@register.filter
def colour_class(colour: str) -> str:
    # Classes, not inline styles: the Content-Security-Policy allows no inline style.
    name = (colour or "").strip().lower()
    return name if name in KNOWN_COLOURS else "white"


@register.filter
def tablet_count(value) -> str:
    """1.5 → "1½", 0.5 → "½", 2 → "2"."""
    count = _count(value)
    whole = int(count)
    half = count % 1 != 0
    if whole == 0 and half:
        return "½"
    return f"{whole}{'½' if half else ''}"


@register.simple_tag
def tablet_icons(count, strength: str, colours: dict) -> str:
    """One round icon per tablet (a half icon for a half tablet), filled with the strength's colour."""
    count = _count(count)
    colour = (colours or {}).get(str(strength), "white")
    icons = ["full"] * int(count) + (["half"] if count % 1 else [])
    label = f"{tablet_count(count)} × {strength} mg, {colour}"
    return format_html(
        '<span class="clinic-tablet-icons" role="img" aria-label="{}">{}</span>',
        label,
        format_html_join(
            "",
            '<span class="clinic-tablet clinic-tablet-{} clinic-colour-{}"></span>',
            ((kind, colour_class(colour)) for kind in icons),
        ),
    )
