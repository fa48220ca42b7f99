"""``python -m bench [NAME ...]``: list the benchmarks, or run the named ones in turn.

Each benchmark is its own module (``python -m bench.NAME --help``) that
measures a baseline in the same run and reports ratios against it.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).parent


def available() -> list[str]:
    return sorted(p.name for p in HERE.iterdir() if (p / "__main__.py").exists())


def main(argv: list[str]) -> int:
    names = argv or []
    if not names:
        print("benchmarks (python -m bench NAME, or make bench BENCH=NAME):")
        for name in available():
            doc = (HERE / name / "__main__.py").read_text().split('"""')[1].strip().splitlines()[0]
            print(f"  {name:<14} {doc}")
        return 0
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(available())}", file=sys.stderr)
        return 2
    code = 0
    for name in names:
        code |= subprocess.call([sys.executable, "-m", f"bench.{name}"])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
