"""Site-level pages: the front door, the favicon, and the refusal page (403) in the admin's style."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import cache_control

#: Said when a refusal carries no reason of its own.
DEFAULT_REFUSAL = "Your role does not allow this action."


def home(request: HttpRequest) -> HttpResponse:
    """``/`` and the admin's "View site": the staff pages live in the admin, so go to its home (the dashboard)."""
    return redirect("admin:index")


@cache_control(max_age=86400, public=True)
def favicon(request: HttpRequest) -> FileResponse:
    """``/favicon.ico``, which browsers ask for on every page whatever the page's ``<link rel="icon">`` says."""
    return FileResponse(
        (settings.BASE_DIR / "static" / "clinic" / "favicon.ico").open("rb"), content_type="image/x-icon"
    )


def _same_site(request: HttpRequest, url: str) -> str:
    """``url`` when it points back into this site (a "back" link never leads elsewhere, nor to ``javascript:``)."""
    return url if url and url_has_allowed_host_and_scheme(url, {request.get_host()}, request.is_secure()) else ""


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """A refused action (``PermissionDenied``): a page in the admin's style that says why and where to go."""
    reason = str(exception) if isinstance(exception, PermissionDenied) and str(exception) else DEFAULT_REFUSAL
    context = {
        **admin.site.each_context(request),
        "title": "Not allowed",
        "reason": reason,
        "back": _same_site(request, request.META.get("HTTP_REFERER", "")),
    }
    response = TemplateResponse(request, "403.html", context, status=403)
    response.render()
    return response
