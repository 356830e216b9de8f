"""Small pieces every benchmark shares: the result of a benchmark that cannot run here, and the URL of
a throwaway database beside the configured one."""

from typing import Any
from urllib.parse import urlparse


def skipped_result(*, name: str, unit: str, baseline: str, measured: str, reason: str) -> dict[str, Any]:
    """The report row of a benchmark skipped for `reason` (printed too, so `make bench` says why)."""
    print(f"{name}: skipped: {reason}")
    return {
        "name": name,
        "description": f"skipped: {reason}",
        "unit": unit,
        "baseline": {"label": baseline, "value": None},
        "measured": {"label": measured, "value": None},
        "ratio": None,
        "skipped": reason,
    }


def database_url_named(url: str, name: str) -> str:
    """`url` pointing at database `name` on the same server."""
    return urlparse(url)._replace(path=f"/{name}").geturl()
