"""The clinic's own pages outside the model admin (behind the admin's login): Today."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from .today import today_view

app_name = "clinic"

urlpatterns = [
    path("today/", admin.site.admin_view(today_view), name="today"),
]
