"""``manage.py permission_matrix [--markdown]``: the role × model × action table of ``patients.roles``.

The README's table is this command's ``--markdown`` output, pasted between its markers; a test keeps the two
equal, so the documentation cannot drift from the code.
"""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand

from patients.choices import Role
from patients.roles import PERMISSION_MATRIX


def matrix_models() -> list[str]:
    """Every model the matrix names, in the order it first appears."""
    models: list[str] = []
    for grants in PERMISSION_MATRIX.values():
        models += [label for label in grants if label not in models]
    return models


def matrix_markdown() -> str:
    roles = list(Role)
    lines = [
        "| model | " + " | ".join(role.value for role in roles) + " |",
        "|---|" + "---|" * len(roles),
    ]
    for label in matrix_models():
        name = apps.get_model(label)._meta.verbose_name
        cells = [", ".join(PERMISSION_MATRIX[role].get(label, ())) or "—" for role in roles]
        lines.append(f"| {name} (`{label}`) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class Command(BaseCommand):
    help = "Print the permission matrix (role × model × action) of patients/roles.py."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--markdown", action="store_true", help="As the Markdown table of the README.")

    def handle(self, *args, markdown: bool = False, **options) -> None:
        if markdown:
            self.stdout.write(matrix_markdown(), ending="")
            return
        for role, grants in PERMISSION_MATRIX.items():
            self.stdout.write(f"{role}:")
            for label, actions in grants.items():
                self.stdout.write(f"  {label}: {', '.join(actions)}")
