"""Independent jobs in worker processes: one job per fresh Python (spawned, since TensorFlow
does not survive a fork), at most `num_processes()` at a time.

Each job is seeded by its arguments, so its result does not depend on which process ran it
or beside what; only measured seconds do. Used by the chapters whose experiments are a loop
over targets (chapter 7's goal table); chapter 2's `l2hmc.experiments.run_targets` and the
comparison's `compare.runner` run their targets the same way.
"""

import os


def num_processes(limit=2):
    """Worker processes to use: the CPU count, at most `limit` (the chapters' budgets are
    set on 2 cores, and one small-target job keeps about one core busy)."""
    return max(1, min(int(limit), os.cpu_count() or 1))


def map_processes(fn, jobs, processes=None):
    """`[fn(*job) for job in jobs]`, in that order, each call in a worker process.

    Args:
      fn: a module-level function (it is pickled by name); its arguments and its result
        must pickle (numpy arrays, not tensors).
      jobs: a list of argument tuples.
      processes: worker processes (default `num_processes()`); 1, or a single job, runs
        everything in this process.
    """
    jobs = [tuple(j) for j in jobs]
    processes = num_processes() if processes is None else int(processes)
    if processes < 1:
        raise ValueError(f"`processes` must be >= 1, got {processes}")
    if processes == 1 or len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(processes, len(jobs)), mp_context=ctx) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        return [f.result() for f in futures]
