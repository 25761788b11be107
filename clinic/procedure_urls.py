"""The procedure letter's pages, mounted under ``/clinic/procedures/`` by ``config/urls.py``."""

from django.urls import path

from .procedure_letter import procedure_letter, procedure_letter_pdf

urlpatterns = [
    path("<int:procedure_id>/letter/", procedure_letter, name="clinic-procedure-letter"),
    path("<int:procedure_id>/letter.pdf", procedure_letter_pdf, name="clinic-procedure-letter-pdf"),
]
