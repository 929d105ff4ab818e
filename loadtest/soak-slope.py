#!/usr/bin/env python3
"""How precisely a soak measures the router's RSS slope.

For each `kreisel-loadtest soak --json` result (plain or gzipped) given, prints the least-squares slope of the
router's RSS after the warm-up, and of RSS less the outboxes' bytes (`kreisel_outbox_bytes`), in % of their mean
per hour, each with its standard error: from a moving-block bootstrap of the residuals (blocks of 10 minutes, since
the samples of a soak are far from independent: a slow subscriber's queue fills and drains over minutes), 300
resamples with a fixed seed. A slope is told apart from zero only when it is about twice its standard error.

Usage: loadtest/soak-slope.py [--warmup SECONDS] RESULT.json[.gz] ...
"""
import argparse
import gzip
import json
import random
import statistics


def least_squares(xs, ys):
    mx = sum(xs) / len(xs)
    my = sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx


def series(samples, warmup, less_outboxes):
    points = []
    for sample in samples:
        if sample["t_s"] < warmup or not sample.get("rss_kib"):
            continue
        y = sample["rss_kib"] * 1024
        if less_outboxes:
            queued = (sample.get("metrics") or {}).get("kreisel_outbox_bytes")
            if queued is None:
                continue
            y -= queued
        points.append((sample["t_s"] / 3600, y))
    return points


def slope_and_error(points, block_s=600, resamples=300):
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    slope, intercept = least_squares(xs, ys)
    residuals = [y - (intercept + slope * x) for x, y in points]
    n = len(points)
    span_s = (xs[-1] - xs[0]) * 3600
    block = min(n, max(1, round(n * block_s / span_s)))
    rng = random.Random(1)
    slopes = []
    for _ in range(resamples):
        drawn = []
        while len(drawn) < n:
            start = rng.randrange(0, n - block + 1)
            drawn.extend(residuals[start : start + block])
        ys_b = [intercept + slope * x + e for x, e in zip(xs, drawn[:n])]
        slopes.append(least_squares(xs, ys_b)[0])
    mean = sum(ys) / n
    return 100 * slope / mean, 100 * statistics.pstdev(slopes) / mean, mean, xs[-1] - xs[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=float, default=600, help="seconds left out at the start (600)")
    parser.add_argument("results", nargs="+")
    args = parser.parse_args()
    for path in args.results:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt") as f:
            samples = json.load(f)["samples"]
        for label, less in (("RSS", False), ("RSS less outboxes", True)):
            points = series(samples, args.warmup, less)
            if len(points) < 10:
                print(f"{path}: {label}: too few samples after the warm-up")
                continue
            slope, error, mean, hours = slope_and_error(points)
            print(
                f"{path}: {label}: {slope:+.2f} %/h ± {error:.2f} (standard error), mean {mean / 2**20:.1f} MiB, "
                f"{hours:.2f} h after the warm-up"
            )


if __name__ == "__main__":
    main()
