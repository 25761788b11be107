"""``{{ source|cite }}``: a rule's source as short citations with the full citation on hover."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from anticoag.citations import cite_html

register = template.Library()


@register.filter
def cite(source: str | None) -> SafeString:
    return cite_html(source)
