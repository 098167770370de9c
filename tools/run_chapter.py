"""Executes one chapter at a scale, outside the book build, and reports its time and glued values.

Usage: `python tools/run_chapter.py book/04_pseudo_marginal.md [--scale book] [--seed 0]
[--out DIR]`. The executed notebook is written to `DIR/<chapter>.<scale>.ipynb` (default
`_build/chapters/`); the script prints the wall-clock and CPU seconds of the kernel, every
glued value (name = text), the slowest cells, and each cell's error if one failed (exit status 1). Use it to
size a chapter against its budget (6 minutes at `book`, 2 at `ci`) and to read the numbers
its prose will show.
"""

import argparse
import os
import pathlib
import resource
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def glued(nb):
    """`{name: text}` of every value the notebook glued (myst-nb's `glue`)."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook", {})
            if meta.get("name"):
                data = o.get("data", {})
                text = next((v for k, v in data.items() if k.endswith("text/plain")), None)
                out[meta["name"]] = text if text is not None else "<" + ", ".join(data) + ">"
    return out


def slowest_cells(nb, count=8):
    """`(seconds, index, first line)` of the `count` slowest code cells, from the timing
    nbclient records in each cell's metadata."""
    import datetime
    rows = []
    for i, cell in enumerate(nb.cells):
        t = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in t and "shell.execute_reply" in t:
            parse = lambda v: datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
            seconds = (parse(t["shell.execute_reply"])
                       - parse(t["iopub.execute_input"])).total_seconds()
            head = next((ln for ln in cell.source.splitlines()
                         if ln.strip() and not ln.startswith(("#", "---", "tags"))), "")
            rows.append((seconds, i, head[:70]))
    return sorted(rows, reverse=True)[:count]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("chapter")
    parser.add_argument("--scale", default="book", choices=("ci", "book", "paper"))
    parser.add_argument("--seed", type=int, default=0, help="HMC_BOOK_SEED (default 0)")
    parser.add_argument("--out", default=str(ROOT / "_build" / "chapters"))
    parser.add_argument("--timeout", type=int, default=1800, help="per cell, seconds")
    args = parser.parse_args(argv)

    import jupytext
    import nbclient
    import nbformat

    path = pathlib.Path(args.chapter).resolve()
    nb = jupytext.read(path)
    os.environ.update(HMC_BOOK_SCALE=args.scale, HMC_BOOK_SEED=str(args.seed),
                      TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg",
                      PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    client = nbclient.NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    failed = None
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        failed = err
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dest = out / f"{path.stem}.{args.scale}.ipynb"
    nbformat.write(nb, dest)
    for name, text in glued(nb).items():
        print(f"{name} = {' '.join(str(text).split())[:200]}")
    print("slowest cells (wall seconds):")
    for seconds, index, head in slowest_cells(nb):
        print(f"  {seconds:7.1f}  cell {index}: {head}")
    print(f"{path.name} at {args.scale}: {wall:.0f} s wall, "
          f"{usage.ru_utime + usage.ru_stime:.0f} s CPU (kernel), written to {dest}")
    if failed is not None:
        print(str(failed)[-3000:], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
