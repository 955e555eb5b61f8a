#!/usr/bin/env python3
"""Formats bench/run's measurements (results.tsv) as the Markdown table of
BENCHMARKS.md, with throughput ratios against each section's reference and
the verdict on the load and fetch targets of issues 3 and 5.

Usage: report.py RESULTS.tsv MACHINE QUIETNESS MODE
"""

import sys
from collections import OrderedDict

FIELDS = ["section", "contender", "rows", "bytes", "seconds", "rss", "ref", "includes"]


def read(path):
    sections = OrderedDict()
    with open(path, encoding="utf-8") as tsv:
        for line in tsv:
            row = dict(zip(FIELDS, line.rstrip("\n").split("\t")))
            row["seconds"] = float(row["seconds"])
            row["rss"] = int(row["rss"])
            row["rows"] = int(row["rows"]) if row["rows"] else None
            row["bytes"] = int(row["bytes"]) if row["bytes"] else None
            sections.setdefault(row["section"], []).append(row)
    return sections


def reference(rows):
    refs = [r for r in rows if r["ref"] == "ref"]
    return min(refs, key=lambda r: r["seconds"]) if refs else rows[0]


def rate(row):
    parts = []
    if row["rows"]:
        parts.append(f"{row['rows'] / row['seconds'] / 1000:,.0f} k rows/s")
    if row["bytes"]:
        parts.append(f"{row['bytes'] / row['seconds'] / 1e6:,.0f} MB/s")
    return ", ".join(parts)


def table(sections):
    out = [
        "| Contender | Seconds | Rate | vs reference | Peak RSS | Includes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for section, rows in sections.items():
        ref = reference(rows)
        out.append(f"| **{section}** | | | | | |")
        for row in rows:
            ratio = ref["seconds"] / row["seconds"]
            mark = " (ref)" if row is ref else ""
            out.append(
                f"| {row['contender']}{mark} | {row['seconds']:.2f} | {rate(row)} "
                f"| {ratio:.2f}x | {row['rss']} MiB | {row['includes']} |"
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
            fetch, curl = best(rows, "bds-fetch"), best(rows, "curl")
            ratio = curl["seconds"] / fetch["seconds"]
            peak = max(r["rss"] for r in rows if r["contender"].startswith("bds-fetch"))
            out.append(
                f"- Fetch ≥ 0.9x curl with RSS < 100 MiB, {section} (best of runs): "
                f"{ratio:.2f}x, bds-fetch peak RSS {peak} MiB (curl "
                f"{curl['rss']} MiB): {verdict(ratio >= 0.9 and peak < 100)}"
            )
        elif section.startswith("Rebuild"):
            one, eight = rows[0]["seconds"], rows[-1]["seconds"]
            out.append(
                f"- Rebuild time independent of archived weeks: 1 week {one:.2f} s, "
                f"8 weeks {eight:.2f} s ({eight / one:.2f}x): "
                f"{verdict(eight <= one * 1.15)}"
            )
    loads = [r for rows in sections.values() for r in rows if r["contender"].startswith("bds-load")]
    peak = max(r["rss"] for r in loads)
    out.append(f"- bds-load peak RSS < 200 MiB (every load above): {peak} MiB: {verdict(peak < 200)}")
    return out


def main():
    path, machine, quietness, mode = sys.argv[1:5]
    sections = read(path)
    lines = [
        f"Machine: {machine}.",
        "",
        f"Run: `bench/run{' --quick' if mode == 'quick' else ''}` ({mode} size); {quietness}.",
        "Ratios are throughput against the section's reference (ref): above 1.00x is faster.",
        "",
    ]
    lines += table(sections)
    lines += ["", "Targets (issues 3 and 5):", ""]
    lines += targets(sections)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
