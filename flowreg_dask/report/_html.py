"""One self-contained HTML page: inline CSS, figures as base64 PNG data URIs, no links."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from typing import Any

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0;
       background: #f4f5f7; color: #1d2330; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 1px solid #d8dbe2; padding-bottom: 4px; }
p.sub { color: #5b6475; margin: 0 0 16px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border: 1px solid #d8dbe2; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef0f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.good { color: #116b2f; font-weight: 600; }
td.bad { color: #a3271b; font-weight: 600; }
figure { margin: 16px 0 24px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e5ea; }
figcaption { font-size: 13px; color: #444b59; margin-top: 4px; }
code { font-size: 12px; word-break: break-all; }
.note { font-size: 12px; color: #5b6475; }
"""


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell ('–' for missing)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "–"
        if isinstance(value, int):
            return f"{value:d}"
        return f"{value:.{digits}g}"
    return str(value)


def _short(value: Any, limit: int = 160) -> str:
    if isinstance(value, list) and len(value) > 8 and all(isinstance(v, int) for v in value):
        contiguous = value == list(range(value[0], value[0] + len(value)))
        if contiguous:
            return f"{value[0]}..{value[-1]} ({len(value)} frames)"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _rows(rows: Sequence[Sequence[tuple[str, str]]]) -> str:
    out = []
    for row in rows:
        cells = "".join(
            f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>" for text, cls in row
        )
        out.append(f"<tr>{cells}</tr>")
    return "\n".join(out)


def render(
    *,
    title: str,
    subtitle: str,
    info: Sequence[tuple[str, str]],
    metric_rows: Sequence[Sequence[tuple[str, str]]],
    metric_note: str,
    figures: Sequence[tuple[str, bytes, str]],
    options: dict[str, Any],
) -> str:
    """The report page.

    ``info``: (label, value) pairs; ``metric_rows``: rows of (html, css class) cells matching
    the header Metric / Raw / Corrected / Change / Meaning; ``figures``: (title, png bytes,
    caption); ``options``: the registration options.
    """
    e = html.escape
    info_html = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in info)
    figs = "\n".join(
        f'<figure><h3>{e(name)}</h3><img alt="{e(name)}" src="{data_uri(png)}">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
        for name, png, caption in figures
    )
    opts = "\n".join(
        f"<tr><th><code>{e(str(k))}</code></th><td><code>{e(_short(v))}</code></td></tr>"
        for k, v in options.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<h1>{e(title)}</h1>
<p class="sub">{e(subtitle)}</p>
<h2>Recording</h2>
<table>
{info_html}
</table>
<h2>Quality metrics</h2>
<table>
<tr><th>Metric</th><th>Raw</th><th>Corrected</th><th>Change</th><th>Meaning</th></tr>
{_rows(metric_rows)}
</table>
<p class="note">{e(metric_note)}</p>
<h2>Figures</h2>
{figs}
<h2>Registration options</h2>
<table>
{opts}
</table>
</main>
</body>
</html>
"""
