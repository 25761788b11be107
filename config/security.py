"""Security plumbing the settings point at: error reports without patient data, the client address behind the
proxy for login throttling, and the answer to a locked-out login (a page for the admin, JSON for the API)."""

from __future__ import annotations

import re

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.views.debug import SafeExceptionReporterFilter


class PhiSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Error reports (the ADMINS e-mails, the technical 500 page) never carry what a user typed or sent.

    Django's default hides only parameters marked sensitive; a form posted on the patient page holds names,
    dates of birth and clinical notes. Here every POST parameter is hidden, the request body is not shown, the
    query string is masked, and settings are cleansed with a wider pattern (keys, tokens, URLs with passwords).
    """

    hidden_settings = re.compile(
        r"API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE|BROKER|URL|EMAIL_HOST_USER", flags=re.I
    )

    def get_post_parameters(self, request):
        if request is None:
            return {}
        if not self.is_active(request):  # DEBUG on: a developer's own machine shows everything
            return request.POST
        return {name: self.cleansed_substitute for name in request.POST}

    def get_traceback_frame_variables(self, request, tb_frame):
        if not self.is_active(request):
            return super().get_traceback_frame_variables(request, tb_frame)
        # Local variables of a frame may be a patient or a form's cleaned data: none are shown.
        return [(name, self.cleansed_substitute) for name in tb_frame.f_locals]

    def get_cleansed_multivaluedict(self, request, multivaluedict):
        if not self.is_active(request):
            return multivaluedict
        return {name: self.cleansed_substitute for name in multivaluedict}


def client_ip(request: HttpRequest) -> str:
    """The client's address for login throttling: ``REMOTE_ADDR``, or behind ``DJANGO_TRUSTED_PROXY_COUNT``
    proxies the address the outermost trusted proxy saw (counted from the right of X-Forwarded-For, so a
    client cannot choose its own address by sending the header)."""
    proxies = settings.ANTICOAG_TRUSTED_PROXY_COUNT
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies > 0 and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "")


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """A locked-out login: JSON 429 under /api/, else a page saying what happened and what to do."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    message = (
        f"Too many failed logins: this account is locked for {minutes} minutes from this address. "
        "Try again later, or ask an administrator to unlock it."
    )
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=429)
    return TemplateResponse(
        request,
        "axes/locked_out.html",
        {"title": "Login locked", "message": message, "site_header": "CVT anticoagulation clinic"},
        status=429,
    ).render()
