"""``python -m bench [--scale full|small]``: generate (or reuse) the network, measure, print, write JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

RESULTS = Path(__file__).resolve().parent / "results.json"


def _ensure_database() -> None:
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "scripts" / "ensure_database.py")], check=True
    )


def machine() -> dict[str, str]:
    from django.db import connection

    info = {"python": platform.python_version(), "cpus": str(os.cpu_count())}
    try:
        with open("/proc/meminfo") as meminfo:
            info["memory"] = f"{int(meminfo.readline().split()[1]) / 1024 / 1024:.1f} GiB"
        with open("/proc/cpuinfo") as cpuinfo:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        info["postgresql"] = cursor.fetchone()[0]
    try:
        import redis
        from django.conf import settings

        info["redis"] = redis.Redis.from_url(settings.CELERY_BROKER_URL).info("server")["redis_version"]
    except Exception as exc:
        info["redis"] = f"unknown ({exc.__class__.__name__})"
    return info


def print_table(figures: list[dict], *, markdown: bool = False) -> None:
    rows = [("figure", "value", "target", "result")]
    for f in figures:
        value = f"{f['value']} {f['unit']}" if f["value"] is not None else "n/a"
        if f["key"].startswith("page_"):
            d = f["detail"]
            value = f"{d['median_ms']} / {d['p95_ms']} ms, {d['queries']} q (1st {d.get('first_request_ms', '?')} ms)"
        result = "" if f["passed"] is None else ("PASS" if f["passed"] else "FAIL")
        rows.append((f["label"], value, f["target"], result))
    if markdown:
        for index, row in enumerate(rows):
            print("| " + " | ".join(str(cell) for cell in row) + " |")
            if index == 0:
                print("| --- | --- | --- | --- |")
        return
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    for index, row in enumerate(rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("command", nargs="?", default="run", choices=["run", "export-child", "markdown"])
    parser.add_argument("username", nargs="?")
    parser.add_argument("--scale", default="full", choices=["full", "small", "tiny"])
    parser.add_argument("--requests", type=int, default=30, help="requests per page after the warm-up")
    parser.add_argument("--reminders", type=int, default=10_000, help="routine reminders queued as the load")
    parser.add_argument("--replan-seconds", type=float, default=60, help="time budget of the re-planning pass")
    parser.add_argument("--only", nargs="*", help="sections to run (export, sweep, …); default all")
    parser.add_argument("--skip-generate", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "markdown":  # the table of the last run, for BENCHMARKS.md
        print_table(json.loads(RESULTS.read_text())["figures"], markdown=True)
        return 0
    if args.command == "run":
        _ensure_database()
    import django

    django.setup()
    import logging

    logging.getLogger("axes").setLevel(logging.WARNING)  # a line per force_login otherwise
    from django.conf import settings

    # Pages render without collectstatic's hashed manifest, as in the test suite (no effect on timing).
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    from bench import generate, hl7, measure

    if args.command == "export-child":
        measure.export_child(args.username)
        return 0

    from django.core.management import call_command

    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    scale = generate.SCALES[args.scale]
    generation = None if args.skip_generate else generate.ensure(scale)
    env = dict(os.environ)
    figures: list = []
    full = args.scale == "full"
    sections = [
        ("1. export", lambda: measure.measure_export(reporting_username="bench.reporting", subprocess_env=env,
                                                     ie_sample=50_000, repeats=3)),
        ("2. sweep", lambda: measure.measure_sweep(small=scale.patients // 10, large=scale.patients, due_items=5000)),
        ("3. TTR report", measure.measure_ttr),
        ("4. pages", lambda: measure.measure_pages(n=args.requests)),
        ("5. reminders", lambda: measure.measure_reminders(load=args.reminders, routine_workers=2,
                                                          database_url=measure.database_url())),
        ("6. HL7 listener", lambda: hl7.measure_throughput(messages=2000 if args.scale == "full" else 500,
                                                           connections=4)
                                    + hl7.measure_alert_latency(alerts=20, database_url=measure.database_url())),
        ("7. dashboard cold", measure.measure_dashboard_cold),
        ("8. import", lambda: measure.measure_import(rows=100_000 if full else 10_000,
                                                     patients=2_000 if full else 200)),
        ("9. replan", lambda: measure.measure_replan(budget=args.replan_seconds)),
    ]  # fmt: skip
    if args.only:
        sections = [(name, run) for name, run in sections if name.split(". ", 1)[1] in args.only]
    timings = {}
    for name, run in sections:
        print(f"{name}…", flush=True)
        t0 = time.perf_counter()
        figures += run()
        timings[name] = round(time.perf_counter() - t0, 1)
        print(f"   {timings[name]} s", flush=True)
    results = {
        "scale": args.scale,
        "patients": scale.patients,
        "inr_readings": scale.inr_readings,
        "machine": machine(),
        "generation_seconds": generation,
        "section_seconds": timings,
        "total_seconds": round(time.perf_counter() - started, 1),
        "figures": measure.as_dicts(figures),
    }
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(f"Scale {args.scale}: {scale.patients:,} patients, {scale.inr_readings:,} INR readings; "
          f"{results['machine'].get('cpus')} CPUs, {results['machine'].get('memory')}, "
          f"PostgreSQL {results['machine']['postgresql']}, Redis {results['machine']['redis']}")  # fmt: skip
    print_table(results["figures"])
    print(f"\nWritten {RESULTS} ({results['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
