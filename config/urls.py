"""URL routes. REST views live in each app's ``api.py`` and are mounted under ``/api/v1/``."""

from django.contrib import admin
from django.urls import include, path

from config.health import healthz
from config.metrics import metrics

admin.site.site_header = "CVT anticoagulation clinic"
admin.site.site_title = "CVT clinic"
admin.site.index_title = "Clinic"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("clinic/", include("clinic.urls")),  # Today (clinic/today.py)
    path("api/v1/", include("config.api_urls")),
    path("clinic/procedures/", include("clinic.procedure_urls")),
]
