"""URL routes. REST views live in each app's ``api.py`` and are mounted under ``/api/v1/``."""

from django.contrib import admin
from django.urls import include, path

from config.health import healthz
from config.metrics import metrics
from config.views import favicon, home

admin.site.site_header = "CVT anticoagulation clinic"
admin.site.site_title = "CVT clinic"
admin.site.index_title = "Clinic"

#: A refused action is a page in the admin's style that says why (config.views).
handler403 = "config.views.permission_denied"

urlpatterns = [
    path("", home, name="home"),
    path("favicon.ico", favicon, name="favicon"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("clinic/", include("clinic.urls")),  # Today (clinic/today.py)
    path("api/v1/", include("config.api_urls")),
    path("clinic/procedures/", include("clinic.procedure_urls")),
]
