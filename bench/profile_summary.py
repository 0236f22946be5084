"""Summarise a py-spy raw (collapsed stacks) profile: the functions with most samples.

python bench/profile_summary.py /tmp/prof/inferia.txt [--top 40] [--self]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--self", action="store_true", help="count only the innermost frame")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in args.path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        if args.self:
            inclusive[frames[-1]] += n
        else:
            for frame in set(frames):
                inclusive[frame] += n
    print(f"{total} samples")
    for frame, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:6.1f}%  {frame[:160]}")


if __name__ == "__main__":
    main()
