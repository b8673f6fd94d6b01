#!/usr/bin/env python3
"""Answer lengths per model: the worked example of a `command` step (docs/commands.md).

usage: answer_lengths.py PLOT_DIR SUMMARY_JSON NAME=GENERATIONS.jsonl [NAME=...]

Reads each model's generations (JSON lines with `completion` and `finish_reason`, as the
`generate` node writes them) and writes
  PLOT_DIR/lengths.svg  a histogram of answer lengths in words, one colour per model;
  SUMMARY_JSON          per model: answers, mean and median words, and the share of answers
                        cut at the token limit (`finish_reason` = "length").
The number of bins is the step's param `bins` (DAG_PARAM_BINS). Standard library only, and
the output depends on the inputs alone (no dates, no paths), so it caches like any node.
"""
import json
import os
import statistics
import sys

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def read(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    sys.exit(f"{path}:{n}: not a JSON line ({e})")
    return rows


def summarise(rows):
    words = [len(str(r.get("completion", "")).split()) for r in rows]
    cut = sum(1 for r in rows if r.get("finish_reason") == "length")
    return words, {
        "answers": len(rows),
        "mean_words": round(statistics.fmean(words), 3) if words else None,
        "median_words": statistics.median(words) if words else None,
        "cut_at_limit": round(cut / len(rows), 4) if rows else None,
    }


def histogram(lengths, bins):
    top = max((max(w) for w in lengths.values() if w), default=0) + 1
    width = max(1, -(-top // bins))  # ceil: every length falls in a bin
    counts = {}
    for name, words in lengths.items():
        c = [0] * bins
        for w in words:
            c[min(w // width, bins - 1)] += 1
        counts[name] = c
    return width, counts


def svg(lengths, bins):
    width, counts = histogram(lengths, bins)
    W, H, left, bottom = 640, 360, 50, 40
    tallest = max((max(c) for c in counts.values()), default=0) or 1
    group = (W - left - 10) / bins
    bar = group / (len(counts) + 1)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
        f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">answer length (words), per model</text>',
        f'<line x1="{left}" y1="{H - bottom}" x2="{W - 10}" y2="{H - bottom}" stroke="black"/>',
        f'<line x1="{left}" y1="30" x2="{left}" y2="{H - bottom}" stroke="black"/>',
        f'<text x="{left - 6}" y="34" text-anchor="end">{tallest}</text>',
        f'<text x="{left - 6}" y="{H - bottom}" text-anchor="end">0</text>',
    ]
    for b in range(bins):
        x = left + b * group
        out.append(f'<text x="{x + group / 2:.1f}" y="{H - bottom + 14}" text-anchor="middle">{b * width}</text>')
        for m, (name, c) in enumerate(counts.items()):
            h = (H - bottom - 30) * c[b] / tallest
            out.append(
                f'<rect x="{x + (m + 0.5) * bar:.1f}" y="{H - bottom - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[m % len(COLOURS)]}"><title>{name}: {c[b]}</title></rect>'
            )
    for m, name in enumerate(counts):
        y = 40 + 16 * m
        out.append(f'<rect x="{W - 120}" y="{y - 9}" width="10" height="10" fill="{COLOURS[m % len(COLOURS)]}"/>')
        out.append(f'<text x="{W - 105}" y="{y}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    plot_dir, summary_path, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
    bins = int(os.environ.get("DAG_PARAM_BINS", "10"))
    if bins < 1:
        sys.exit(f"bins must be at least 1, got {bins}")
    lengths, summary = {}, {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep:
            sys.exit(f"expected NAME=PATH, got {pair!r}")
        lengths[name], summary[name] = summarise(read(path))
    os.makedirs(plot_dir, exist_ok=True)
    with open(os.path.join(plot_dir, "lengths.svg"), "w", encoding="utf-8") as f:
        f.write(svg(lengths, bins))
    with open(summary_path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
