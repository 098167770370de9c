"""Re-using compiled functions across runs that differ only in numbers.

Tracing a sampler or a training step into a graph, and compiling it with XLA, costs seconds;
running it for a few hundred steps often costs less. A learned sampler trained under three
seeds, or NNgHMC refitting its network, builds the same graph again and again with new
variables. `Cache` keeps one *workspace* (compiled functions and the variables they capture)
per structure, and the caller copies each run's numbers into the workspace's variables
(`copy_weights`), so one compilation serves every run.

A cache entry is found by (1) settings: a hashable tuple of every Python-level value the
compiled function bakes in, and (2) pins: objects the compiled function closes over (a
target, a log-density), matched by identity and held by the entry so that no other object
can take their `id` while it lives. The cache is bounded (least recently used out).
"""

import collections
import functools

import numpy as np


class Cache:
    """A bounded map `(pins, settings) -> workspace`; see the module docstring.

    Args:
      maxsize: entries kept (least recently used dropped first), >= 1.
    """

    def __init__(self, maxsize=4):
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"`maxsize` must be an integer >= 1, got {maxsize!r}")
        self.maxsize = maxsize
        self._entries = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, pins, settings, build):
        """The workspace for `pins` (a tuple of objects, by identity) and `settings` (hashable),
        built by `build()` on a miss."""
        key = (tuple(id(p) for p in pins), settings)
        entry = self._entries.get(key)
        if entry is not None and all(a is b for a, b in zip(entry[0], pins)):
            self.hits += 1
            self._entries.move_to_end(key)
            return entry[1]
        self.misses += 1
        self._entries.pop(key, None)
        while len(self._entries) >= self.maxsize:   # made room first: never maxsize + 1 alive
            self._entries.popitem(last=False)
        workspace = build()
        self._entries[key] = (tuple(pins), workspace)
        return workspace

    def clear(self):
        """Drops every entry (the next `get` of each key builds anew)."""
        self._entries.clear()

    def __len__(self):
        return len(self._entries)


def memo(build):
    """`build(key)` once per key per process.

    Returns a function `get(key)` that calls `build(key)` the first time it sees `key`
    (hashable) and returns that same object on every later call. Meant for immutable
    objects whose *identity* matters, such as the targets that pin a `Cache`'s entries:
    building a target again would give a new object, hence new cache keys and a new
    compilation. Unbounded (for a handful of named objects); an exception from `build` is
    not remembered. `get.built` is the dict `key -> object`; `get.clear()` forgets them.
    """
    built = {}

    @functools.wraps(build)
    def get(key):
        if key not in built:
            built[key] = build(key)
        return built[key]

    get.built, get.clear = built, built.clear
    return get


def structure(module, exclude=("seed",)):
    """A hashable description of a network's graph: its type, its `config()` without the
    keys in `exclude` (the seed changes the numbers, not the graph), and every variable's
    name, shape and dtype."""
    config = getattr(module, "config", {})
    config = config() if callable(config) else config
    config = tuple(sorted((k, repr(v)) for k, v in config.items() if k not in exclude))
    variables = tuple((v.name, tuple(v.shape), v.dtype.name) for v in module.variables)
    return type(module).__name__, config, variables


def copy_weights(src, dst):
    """Assigns every variable of network `src` (a `tf.Module`) to the matching one of `dst`:
    same type, and variables of the same names, shapes and dtypes (else `ValueError`)."""
    signature = lambda m: (type(m), structure(m)[2])
    if signature(src) != signature(dst):
        raise ValueError(f"cannot copy weights between networks of different structure: "
                         f"{structure(src)} vs {structure(dst)}")
    for a, b in zip(src.variables, dst.variables):
        b.assign(a)
    return dst


def as_key(value):
    """A hashable, exact stand-in for a number, an array or a nested tuple/list of them (arrays
    by dtype, shape and bytes)."""
    if isinstance(value, (list, tuple)):
        return tuple(as_key(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    a = np.asarray(value)
    return (a.dtype.str, a.shape, a.tobytes())


def rebuild(module):
    """A new network of `module`'s type and architecture (`type(module)(**config)`), with its
    own (fresh) weights."""
    config = module.config
    return type(module)(**(config() if callable(config) else config))


def kernel_for(cache, pins, settings, net, build):
    """A kernel running network `net`'s weights whose compiled graph is shared.

    The first call for `pins`, `settings` and `net`'s `structure` builds `build(copy)` around
    a new network of the same architecture (`rebuild`); every call copies `net`'s weights into
    that copy and returns the same kernel, so `hmc_lib.sample` re-uses its compiled graph.
    The kernel therefore runs the weights of the latest call: use it before the next call.
    """
    def make():
        own = rebuild(net)
        return own, build(own)

    own, kernel = cache.get(pins, (settings, structure(net)), make)
    copy_weights(net, own)
    return kernel
