"""The project's widget templates (templates/django/forms/, rendered through TEMPLATES with FORM_RENDERER)
write the same markup as Django's own, with the attributes from {% html_attrs %} instead of an include."""

from __future__ import annotations

import datetime

import pytest
from django import forms
from django.forms.renderers import DjangoTemplates, get_default_renderer
from django.template import Context, Template
from django.template.loader import get_template
from django.utils.safestring import mark_safe

from clinic.templatetags.html_attrs import html_attrs


class EveryWidget(forms.Form):
    name = forms.CharField(max_length=20, help_text="A name", widget=forms.TextInput(attrs={"autofocus": True}))
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "placeholder": 'say "hi" <now>'}))
    count = forms.IntegerField(min_value=0, initial=0)
    on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), initial=datetime.date(2026, 12, 2))
    kind = forms.ChoiceField(choices=[("a", "A & B"), ("Group", [("c", "C"), ("d", "D")])], initial="c")
    many = forms.MultipleChoiceField(choices=[("x", "X"), ("y", "Y")], initial=["y"], required=False)
    flag = forms.BooleanField(required=False, initial=True)
    secret = forms.CharField(widget=forms.HiddenInput, initial="s<>")
    colour = forms.ChoiceField(choices=[("r", "Red"), ("g", "Green")], widget=forms.RadioSelect, initial="g")


def test_the_project_renders_forms_with_its_own_widget_templates():
    renderer = get_default_renderer()
    assert get_template("django/forms/widgets/input.html").origin.name.endswith(
        "templates/django/forms/widgets/input.html"
    )
    assert "html_attrs" in renderer.get_template("django/forms/widgets/select.html").template.source


@pytest.mark.parametrize("bound", [False, True], ids=["unbound", "bound with errors"])
def test_every_widget_writes_the_markup_django_writes(bound):
    data = {"name": "x" * 30, "note": "<b>", "count": "-1", "kind": "zz", "many": ["x"], "secret": "1"}
    ours = EveryWidget(data) if bound else EveryWidget()
    django_own = EveryWidget(data, renderer=DjangoTemplates()) if bound else EveryWidget(renderer=DjangoTemplates())
    assert str(ours) == str(django_own)
    for field in ("name", "kind", "flag"):
        assert ours[field].label_tag() == django_own[field].label_tag()


def test_html_attrs_writes_what_django_s_attrs_template_writes():
    django_attrs = Template('{% include "django/forms/widgets/attrs.html" %}')
    cases = [
        {},
        {"id": "id_x", "required": True, "disabled": False, "maxlength": 20, "step": 0, "min": None},
        {"placeholder": 'a "quoted" <tag> & more', "data-x": mark_safe("<safe>")},
        {"class": "vTextField", "aria-describedby": "id_x_helptext"},
    ]
    for attrs in cases:
        expected = django_attrs.render(Context({"widget": {"attrs": attrs}}))
        assert html_attrs(attrs) == expected, attrs
    assert html_attrs(None) == ""
