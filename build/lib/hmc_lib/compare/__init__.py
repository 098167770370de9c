"""Which sampler when? Every method of the book on a common set of targets (issue 18).

Not a method package: like `bench`, it sits on top and imports the methods (which never
import each other); nothing in the library imports it. Used by `book/09_compare.md` and by
`python -m hmc_lib.bench compare`.

- `grid`: the methods, the targets per scale, which method applies where (and why not), and
  the run sizes;
- `runner`: `run(scale) -> (records, seconds)`, one `Record` per (method, target) with every
  field (learned ones: the median over training seeds, `aggregate`), each run continued
  until the convergence gate passes or its budget is spent; `run_cached`, the same computed
  once per library version; `reference`, the break-even reference; `tfp_nuts_kernel`, the
  TFP baseline; `standardised`, the warm-up's preconditioning;
- `record`: the recorded long run of the grid (`tools/record.py compare_grid`), which chapter 9
  renders beside its `book` run;
- `metrics`: bias in posterior sds, the break-even number of effective draws, and ESS per
  second with training amortised; `worst`, `converged`, `paired`, `amortised_range` and
  `winner`, the chapter's guidance over training seeds, from converged cells only.
"""

from hmc_lib.compare import grid, metrics
from hmc_lib.compare.grid import METHODS, applies, settings, targets_at
from hmc_lib.compare.metrics import (amortised_range, amortised_rate, bias, break_even,
                                     converged, paired, winner, worst)
from hmc_lib.compare.runner import (MEASURES, BIAS_FIELDS, SPREAD, Record, aggregate,
                                    ground_truth, reference, run, run_cached, run_target,
                                    standardised, tfp_nuts_kernel)

__all__ = ["grid", "metrics", "METHODS", "applies", "settings", "targets_at", "amortised_rate",
           "amortised_range", "bias", "break_even", "converged", "paired", "winner", "worst",
           "MEASURES", "BIAS_FIELDS", "SPREAD", "Record", "aggregate", "ground_truth",
           "reference", "run", "run_cached", "run_target", "standardised", "tfp_nuts_kernel"]
