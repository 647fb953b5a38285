"""The report's HTML page: its style, its frame and the monitors' Markdown.

The sections (`sections.py`) say what to show; this module says how the page
around them looks, in one place: the CSS, the header naming the logs, the
"Not recorded" line, the list of tags left uncharted, and the little
Markdown the monitors write into their text tags.
"""

import datetime
import html
import os
import re

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif;
       max-width: 920px; margin: 2em auto; padding: 0 1em; color: #222;
       line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em;
     margin-top: 1.8em; }
code { background: #f3f3f3; padding: 0 0.25em; border-radius: 3px; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.8em 0; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; }
td:last-child { text-align: right; font-variant-numeric: tabular-nums; }
dt { font-weight: 600; margin-top: 0.6em; }
dd p, dd ul { margin: 0.2em 0; }
li.problem { color: #a61b1b; }
li.warning { color: #8a5a00; }
li.ok { color: #2e6b30; }
.meta { color: #555; }
"""


def render(log_dir, runs, built, uncharted):
    """The whole HTML page.

    Args:
        log_dir: the folder the logs were read from.
        runs: the run names, in order ("" for `log_dir` itself).
        built: `(section id, title, inner HTML or None)` per section, in
            order; `None` sections are named under "Not recorded".
        uncharted: `(run, [tag])` of the scalar tags no section charts.

    Returns:
        The page, a string.
    """
    body, missing = [], []
    for section_id, title, inner in built:
        if inner is None:
            missing.append(title)
            continue
        body.append(
            f'<section id="{section_id}"><h2>{html.escape(title)}</h2>\n'
            f"{inner}</section>"
        )
    absolute = os.path.abspath(log_dir)
    run_list = ", ".join(
        f"<code>{html.escape(run or '.')}</code>" for run in runs
    )
    meta = [
        f"<p class='meta'>Logs: <code>{html.escape(absolute)}</code> "
        f"({len(runs)} run{'s' if len(runs) != 1 else ''}: {run_list}). "
        f"Written {datetime.datetime.now():%Y-%m-%d %H:%M} by "
        "<code>keras_trainopt.reporting.write_report</code>; browse the same "
        f"logs live with <code>tensorboard --logdir "
        f"{html.escape(absolute)}</code>.</p>"
    ]
    if missing:
        meta.append(
            "<p class='meta' id='not-recorded'>Not recorded: "
            + "; ".join(html.escape(title) for title in missing) + ".</p>"
        )
    title = f"Training report: {os.path.basename(absolute) or absolute}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n"
        + "\n".join(meta + body)
        + "\n"
        + _other_tags(uncharted)
        + "\n</body></html>\n"
    )


def _other_tags(uncharted):
    """A folded list of the scalar tags without a chart ("" when none)."""
    items = [
        f"<li><code>{html.escape(run or '.')}</code>: "
        + ", ".join(f"<code>{html.escape(tag)}</code>" for tag in other)
        + "</li>"
        for run, other in uncharted
    ]
    if not items:
        return ""
    count = sum(len(other) for _, other in uncharted)
    return (
        f"<details><summary>{count} more scalar tags, not charted here "
        "(open TensorBoard to see them)</summary><ul>"
        + "".join(items) + "</ul></details>"
    )


def markdown(text):
    """The little Markdown the monitors write, as HTML.

    Lines become paragraphs, "- " or "* " lines list items (coloured by a
    leading `**problem**`, `**warning**` or `**ok**`), `**bold**` and
    `` `code` `` are marked up; everything else is escaped, never markup.

    Args:
        text: the text of a monitor's text tag.
    """
    blocks, items = [], []

    def flush():
        if items:
            blocks.append("<ul>" + "".join(items) + "</ul>")
            items.clear()

    for line in text.splitlines():
        line = line.strip()
        if line.startswith(("- ", "* ")):
            line = line[2:]
            severity = re.match(r"\*\*(problem|warning|ok)\*\*", line)
            css = f' class="{severity.group(1)}"' if severity else ""
            items.append(f"<li{css}>{_inline(line)}</li>")
            continue
        flush()
        if line:
            blocks.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(blocks)


def _inline(text):
    """Escapes `text`, then marks up `**bold**` and `` `code` ``."""
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
