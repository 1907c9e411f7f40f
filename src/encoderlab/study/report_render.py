"""The report rendered: Markdown (``report.md``) and a self-contained HTML page (``report.html``,
figures embedded) from the same parts."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

from encoderlab.study.findings import INTRO as FINDINGS_INTRO


@dataclass
class ReportParts:
    """Everything a report shows, computed once; both renderings read it."""

    name: str
    description: str
    seeds: int
    table: str  # the main table (Markdown)
    verdicts: list[str]
    regime: list[str]
    held: list[str]
    lr_lines: list[str]
    seed_lines: list[str]
    sig_lines: list[str]
    finding_lines: list[str]
    figures: dict[str, str]  # title -> base64 PNG
    card: list[str]
    provenance: dict

    @property
    def intro(self) -> str:
        return (f"Test scores (x100) at the fine-tuning LR selected on validation, mean over {self.seeds} seeds ± "
                "half-width of the 95% Student-t interval over seeds. Best per column in bold; † marks a model "
                "significantly better than the one it is compared with (the report's one inference procedure, over "
                "fine-tuning seeds and test items, Holm-corrected p < 0.05; see 'Paired comparisons').")


HELD_INTRO = ("Scores on the test items whose key words (review adjectives, names) never occur in the task's "
              "fine-tuning data, which only pretraining can teach, and on the other items; mean over seeds at "
              "the selected LR ± half-width of the 95% Student-t interval over seeds.")


def render_markdown(parts: ReportParts) -> str:
    sections = [f"# {parts.name}", parts.description, "## Summary", parts.intro, parts.table,
                "Verdicts (details in 'Paper findings'):\n\n" + "\n".join(f"- {v}" for v in parts.verdicts)
                if parts.verdicts else "(no paper finding testable)"]
    if parts.regime:
        sections += ["## Pretraining regime", "\n".join(parts.regime)]
    if parts.held:
        sections += ["## Held-out items", HELD_INTRO, "\n".join(parts.held)]
    return "\n\n".join([
        *sections, "## Score per fine-tuning LR (test mean over seeds; selected LR in bold)",
        "\n".join(parts.lr_lines), "## Per-seed scores and stability across the LR grid (Fig. 5)",
        "\n".join(parts.seed_lines),
        "## Paired comparisons", "\n".join(parts.sig_lines) if parts.sig_lines else "(none)",
        "## Paper findings", FINDINGS_INTRO, "\n".join(parts.finding_lines) if parts.finding_lines else "(none testable)",
        *[f"## {title}\n\n![{title}](data:image/png;base64,{png})" for title, png in parts.figures.items()],
        "## Protocol", "\n".join(parts.card), "## Provenance",
        "```json\n" + json.dumps(parts.provenance, indent=2) + "\n```",
    ]) + "\n"


_NUMERIC = re.compile(r"[-+]?[\d.,]+(e[-+]?\d+)?( ± [\d.]+)?( \([a-z ]+\))?[†]*|<0\.0001|\[[-\d., ]+\]")


def _md_table_to_html(lines: list[str]) -> str:
    rows = [line.strip("|").split(" | ") for line in lines if not set(line) <= set("|-")]
    out = ["<table>"]
    for index, row in enumerate(rows):
        tag = "th" if index == 0 else "td"
        cells = []
        for value in row:
            value = value.strip()
            bold = value.startswith("**")
            text = html.escape(value.replace("**", ""))
            numeric = tag == "td" and _NUMERIC.fullmatch(value.replace("**", "").strip()) is not None
            opening = f'<{tag} class="num">' if numeric else f"<{tag}>"
            cells.append(f"{opening}{'<b>' + text + '</b>' if bold else text}</{tag}>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out + ["</table>"])


def render_html(parts: ReportParts) -> str:
    verdicts = "".join(f"<li>{html.escape(v.replace('**', ''))}</li>" for v in parts.verdicts)
    regime = f"<h2>Pretraining regime</h2>{_md_table_to_html(parts.regime)}" if parts.regime else ""
    held = (f"<h2>Held-out items</h2><p>{html.escape(HELD_INTRO)}</p><div id=\"held-out\">"
            f"{_md_table_to_html(parts.held)}</div>") if parts.held else ""
    images = "\n".join(f'<h2>{html.escape(t)}</h2><img alt="{html.escape(t)}" src="data:image/png;base64,{png}">'
                       for t, png in parts.figures.items())
    sig_lines, finding_lines = parts.sig_lines, parts.finding_lines
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(parts.name)} - encoderlab report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}th,td{{border:1px solid #bbb;padding:4px 8px;text-align:left}}
td.num{{text-align:right;white-space:nowrap}}img{{max-width:100%}}pre{{background:#f4f4f4;padding:1em;overflow:auto}}</style>
</head><body>
<h1 id="title">{html.escape(parts.name)}</h1>
<p>{html.escape(parts.description)}</p>
<h2>Summary</h2>
<p>{html.escape(parts.intro)}</p>
<div id="results">{_md_table_to_html(parts.table.splitlines())}</div>
<ul id="verdicts">{verdicts}</ul>
{regime}
{held}
<h2>Score per fine-tuning LR (selected LR in bold)</h2>{_md_table_to_html(parts.lr_lines)}
<h2>Per-seed scores and stability across the LR grid (Fig. 5)</h2><div id="stability">{_md_table_to_html(parts.seed_lines)}</div>
<h2>Paired comparisons</h2>{_md_table_to_html(sig_lines) if sig_lines else "<p>(none)</p>"}
<h2>Paper findings</h2><p>{html.escape(FINDINGS_INTRO.replace("**", ""))}</p>
<div id="findings">{_md_table_to_html(finding_lines) if finding_lines else "<p>(none testable)</p>"}</div>
{images}
<h2>Protocol</h2><div id="protocol">{_md_table_to_html(parts.card)}</div>
<h2>Provenance</h2><pre>{html.escape(json.dumps(parts.provenance, indent=2))}</pre>
</body></html>
"""
