"""Template tags of the staff pages: the clinic dashboard on the admin home (admin/clinic/index.html)."""

from __future__ import annotations

from django import template

from clinic.dashboard import clinic_dashboard as clinic_dashboard_data

register = template.Library()


@register.inclusion_tag("admin/clinic/dashboard.html", takes_context=True)
def clinic_dashboard(context) -> dict:
    """The dashboard of the logged-in user's clinics, above the admin's list of models."""
    request = context["request"]
    return {"dashboard": clinic_dashboard_data(user=request.user), "request": request, "perms": context.get("perms")}
