#!/usr/bin/env python3
"""Formats bench/run's measurements (results.tsv) as the Markdown table of
BENCHMARKS.md, with throughput ratios against each section's reference and
the verdict on the load and fetch targets.

Usage: report.py RESULTS.tsv MACHINE QUIETNESS COMMAND MODE
"""

import sys
from collections import OrderedDict

FIELDS = [
    "section", "contender", "rows", "bytes", "seconds", "rss", "ref", "includes", "client", "server",
]


def read(path):
    """Measurements grouped by section, then by contender (one per repetition)."""
    sections = OrderedDict()
    with open(path, encoding="utf-8") as tsv:
        for line in tsv:
            row = dict(zip(FIELDS, line.rstrip("\n").split("\t")))
            row["seconds"] = float(row["seconds"])
            row["rss"] = int(row["rss"])
            row["rows"] = int(row["rows"]) if row["rows"] else None
            row["bytes"] = int(row["bytes"]) if row["bytes"] else None
            contenders = sections.setdefault(row["section"], OrderedDict())
            contenders.setdefault(row["contender"], []).append(row)
    return OrderedDict(
        (section, [summary(runs) for runs in contenders.values()])
        for section, contenders in sections.items()
    )


def summary(runs):
    """The best repetition, with the worst time and the highest peak RSS."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["worst"] = max(r["seconds"] for r in runs)
    best["runs"] = len(runs)
    best["rss"] = max(r["rss"] for r in runs)
    return best


def reference(rows):
    return next((r for r in rows if r["ref"] == "ref"), rows[0])


def rate(row):
    parts = []
    if row["rows"]:
        parts.append(f"{row['rows'] / row['seconds'] / 1000:,.0f} k rows/s")
    if row["bytes"]:
        parts.append(f"{row['bytes'] / row['seconds'] / 1e6:,.0f} MB/s")
    return ", ".join(parts)


def seconds(row):
    if row["runs"] == 1:
        return f"{row['seconds']:.2f}"
    return f"{row['seconds']:.2f} ({row['worst']:.2f})"


def cpu(row):
    server = f" + {row['server']}" if row["server"] else ""
    return f"{row['client']}{server}"


def table(sections):
    out = [
        "| Contender | Seconds best (worst) | Rate | vs ref | Peak RSS | CPU s: client + server "
        "| Includes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for section, rows in sections.items():
        ref = reference(rows)
        out.append(f"| **{section}** | | | | | | |")
        for row in rows:
            ratio = ref["seconds"] / row["seconds"]
            mark = " (ref)" if row is ref else ""
            out.append(
                f"| {row['contender']}{mark} | {seconds(row)} | {rate(row)} "
                f"| {ratio:.2f}x | {row['rss']} MiB | {cpu(row)} | {row['includes']} |"
            )
    return out


def best(rows, prefix):
    chosen = [r for r in rows if r["contender"].startswith(prefix)]
    return min(chosen, key=lambda r: r["seconds"]) if chosen else None


def verdict(ok):
    return "**holds**" if ok else "**does not hold**"


def targets(sections):
    out = []
    for section, rows in sections.items():
        ours, ref = best(rows, "bds-load"), reference(rows)
        if section.startswith("Full load"):
            ratio = ref["seconds"] / ours["seconds"]
            out.append(
                f"- Full load ≥ 1.0x `psql \\copy` csv (aim 1.5x), {section}: "
                f"{ratio:.2f}x: {verdict(ratio >= 1.0)}"
                + (" (aim met)" if ratio >= 1.5 else " (aim 1.5x not met)")
            )
        elif section.startswith("Differential"):
            ratio = ref["seconds"] / ours["seconds"]
            out.append(
                f"- Differential ≥ 0.8x hand-written, {section}: {ratio:.2f}x: "
                f"{verdict(ratio >= 0.8)}"
            )
        elif section.startswith("Fetch"):
            fetch, curl = best(rows, "bds-fetch"), reference(rows)
            synced = best(rows, "curl -o file && sync")
            ratio = curl["seconds"] / fetch["seconds"]
            out.append(
                f"- Fetch ≥ 0.9x curl with RSS < 100 MiB, {section}: {ratio:.2f}x "
                f"({synced['seconds'] / fetch['seconds']:.2f}x of curl + sync), bds-fetch peak "
                f"RSS {fetch['rss']} MiB (curl {curl['rss']} MiB): "
                f"{verdict(ratio >= 0.9 and fetch['rss'] < 100)}"
            )
        elif section.startswith("Rebuild"):
            one, eight = rows[0]["seconds"], rows[-1]["seconds"]
            out.append(
                f"- Rebuild time independent of archived weeks: 1 week {one:.2f} s, "
                f"8 weeks {eight:.2f} s ({eight / one:.2f}x): "
                f"{verdict(eight <= one * 1.15)}"
            )
    loads = [r for rows in sections.values() for r in rows if r["contender"].startswith("bds-load")]
    if loads:
        peak = max(r["rss"] for r in loads)
        out.append(
            f"- bds-load peak RSS < 200 MiB (every load above): {peak} MiB: {verdict(peak < 200)}"
        )
    return out


def main():
    path, machine, quietness, command, mode = sys.argv[1:6]
    sections = read(path)
    lines = [
        f"Machine: {machine}.",
        "",
        f"Run: `{command}` ({mode}); {quietness}.",
        "Each line is the best of the repetitions (the worst in brackets); ratios are throughput",
        "against the section's reference (ref), best against best: above 1.00x is faster.",
        "CPU: user + system seconds of the measured command, + those of the PostgreSQL cluster",
        "(or, for fetches, of the fake Data Hub) meanwhile.",
        "",
    ]
    lines += table(sections)
    lines += ["", "Targets:", ""]
    lines += targets(sections)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
