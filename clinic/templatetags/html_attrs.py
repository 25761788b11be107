"""``{% html_attrs mapping %}``: an element's attributes, written in Python.

Django's form widgets write their attributes by including ``django/forms/widgets/attrs.html`` (a loop in the
template language) once per widget, per ``<option>`` and per label: on the patient page about 150 includes,
a tenth of the page's time (issue 18). The widget templates under ``templates/django/forms/`` call this tag
instead; the output is the same markup: each attribute as `` name="value"`` (both escaped unless already
safe), `` name`` alone for ``True``, nothing for ``False``.

A builtin of the template engine (``config/settings.py``), so the templates need no ``{% load %}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.simple_tag
def html_attrs(attrs: Mapping[str, Any] | None) -> SafeString:
    parts = []
    for name, value in (attrs or {}).items():
        if value is False:
            continue
        if value is True:
            parts.append(f" {conditional_escape(name)}")
        else:
            parts.append(f' {conditional_escape(name)}="{conditional_escape(value)}"')
    return mark_safe("".join(parts))  # every part escaped above
