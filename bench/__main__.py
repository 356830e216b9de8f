"""`make bench`: run every benchmark, each beside its same-run baseline, and write one report
(markdown + JSON) under bench/results/."""

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import django

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    django.setup()

    from bench import (
        admin_changelists,
        campaign_fanout,
        cloud_send,
        consent_export,
        dashboard,
        dispatch,
        webhook_ingest,
    )

    benchmarks = [
        admin_changelists.run,
        campaign_fanout.run,
        cloud_send.run,
        consent_export.run,
        dashboard.run,
        dispatch.run,
        webhook_ingest.run,
    ]
    results = []
    for benchmark in benchmarks:
        result = benchmark()
        results.append(result)
        print(
            f"{result['name']}: {result['measured']['value']} {result['unit']} vs baseline "
            f"{result['baseline']['value']} {result['unit']} (ratio {result['ratio']})"
        )

    RESULTS_DIR.mkdir(exist_ok=True)
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "results": results,
    }
    (RESULTS_DIR / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Benchmark report",
        "",
        f"Generated {report['generated_at']} on {report['machine']['platform']}, "
        f"{report['machine']['cpus']} CPUs, Python {report['machine']['python']}.",
        "",
        "| benchmark | what | baseline | measured | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['description']} | {r['baseline']['label']}: {r['baseline']['value']} {r['unit']} "
            f"| {r['measured']['label']}: {r['measured']['value']} {r['unit']} | {r['ratio']} |"
        )
    (RESULTS_DIR / "report.md").write_text("\n".join(lines) + "\n")
    print(f"Report: {RESULTS_DIR / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
