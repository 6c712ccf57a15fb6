"""Launches as data, without a GPU: which Triton kernels a piece of code launches, with the exact
compile-time parameters its launchers chose, and how many kernel-launching PyTorch operations run
around them. The GPU-side facts of those launches (registers, spills, shared memory, tensor-core
instructions) are then read from an ahead-of-time compile (tools/kernel_report.py).

    with record_launches() as rec:
        planner.plan(z0, prev)          # any device, "meta" included: nothing runs
    rec.triton      # [Launch(kernel, grid, constexprs, num_warps, num_stages, signature, ...), ...]
    rec.torch_ops   # {aten op name: count} of the operations that launch a kernel on a GPU

On the meta device nothing is computed, so a model of any preset fits; the Triton launchers still
run (they only allocate and pick block sizes) and their launches are recorded instead of executed.
"""
from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field

from torch.utils._python_dispatch import TorchDispatchMode

# Operations that never launch a kernel on a GPU: views, metadata and allocation without a fill.
_NO_LAUNCH = {
    "view", "_unsafe_view", "reshape", "expand", "permute", "transpose", "t", "unsqueeze", "squeeze", "slice",
    "select", "as_strided", "alias", "detach", "empty", "empty_like", "empty_strided", "new_empty", "lift_fresh",
    "unbind", "split", "split_with_sizes", "chunk", "narrow", "_reshape_alias", "view_as", "expand_as",
    "numpy_T", "contiguous", "_to_copy_noop", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "is_same_size",
}


@dataclass(frozen=True)
class Launch:
    """One Triton launch: the kernel's name, its grid, the constexpr arguments, num_warps/num_stages
    and the Triton type of every argument (the signature triton.compile takes)."""
    kernel: str
    grid: tuple
    constexprs: tuple  # ((name, value), ...) in the kernel's parameter order
    num_warps: int
    num_stages: int
    signature: tuple  # ((name, Triton type: "*fp32", "*bf16", "i32", "fp32", "constexpr"), ...)
    divisible: tuple = ()  # names of the arguments specialised as divisible by 16 (pointers, strides)
    scalars: tuple = ()  # ((name, value), ...) of the integer and float arguments (sizes, strides)
    maxnreg: int | None = None  # the launch's register limit per thread (None: ptxas chooses)

    def key(self) -> tuple:
        """What decides the compiled binary: kernel, constexprs, warps, stages, argument types, the
        runtime specialisation (an integer equal to 1 becomes a constant, multiples of 16 are
        marked) and the register limit."""
        key = self.kernel, self.constexprs, self.num_warps, self.num_stages, self.signature, self.divisible
        return key if self.maxnreg is None else (*key, self.maxnreg)


@dataclass
class Recording:
    triton: list[Launch] = field(default_factory=list)
    torch_ops: Counter = field(default_factory=Counter)

    @property
    def torch_launches(self) -> int:
        return sum(self.torch_ops.values())

    @property
    def launches(self) -> int:
        return len(self.triton) + self.torch_launches


class _CountOps(TorchDispatchMode):
    def __init__(self, counter: Counter):
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in _NO_LAUNCH:
            self.counter[name] += 1
        return func(*args, **(kwargs or {}))


class _Recorder:
    """Stands in for a @triton.jit kernel: `kernel[grid](*args, **kw)` records instead of running."""

    def __init__(self, jit_fn, rec: Recording):
        self.fn, self.rec = jit_fn, rec
        self.params = list(jit_fn.params)

    def __getitem__(self, grid):
        def launch(*args, num_warps: int = 4, num_stages: int = 3, maxnreg: int | None = None, **kwargs):
            bound = dict(zip([p.name for p in self.params], args))
            bound.update(kwargs)
            consts, sig, divisible = [], [], []
            scalars = tuple((p.name, bound[p.name]) for p in self.params
                            if not p.is_constexpr and isinstance(bound[p.name], (int, float)))
            for p in self.params:
                value = bound[p.name]
                if p.is_constexpr:
                    kind, attr = "constexpr", value
                else:  # what Triton's launcher would specialise on (jit.py: specialize_impl)
                    kind, attr = _specialize(value, not p.do_not_specialize, not p.do_not_specialize_on_alignment)
                sig.append((p.name, kind))
                if kind == "constexpr":
                    consts.append((p.name, attr))
                elif attr == "D":
                    divisible.append(p.name)
            self.rec.triton.append(Launch(self.fn.__name__, tuple(grid), tuple(consts), num_warps, num_stages,
                                          tuple(sig), tuple(divisible), scalars, maxnreg))
        return launch


def _specialize(value, specialize: bool, align: bool) -> tuple:
    """(Triton type or "constexpr", attribute) as Triton's launcher computes them: an integer equal
    to 1 becomes the constant 1, integers and pointers divisible by 16 get "D". Meta tensors have
    address 0 (divisible), as the caching allocator's blocks are (256-byte aligned)."""
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend

    return native_specialize_impl(BaseBackend, value, False, specialize, align)[:2]


def kernel_functions() -> list[tuple]:
    """(module, attribute name) of every Triton kernel the package launches."""
    from . import elite_score, fused_linear, rollout_values, two_hot_head

    return [(fused_linear, "_fused_linear_kernel"), (two_hot_head, "_two_hot_value_kernel"),
            (rollout_values, "_policy_kernel"), (rollout_values, "_heads_kernel"),
            (elite_score, "_elite_score_kernel")]


@contextlib.contextmanager
def record_launches():
    """Record (and do not run) every Triton launch, and count the PyTorch operations that would
    launch a kernel, inside the block. Also lets kernels=triton be chosen on any device."""
    from .. import kernels as kpkg

    rec = Recording()
    saved = {}
    for module, name in kernel_functions():
        saved[module, name] = getattr(module, name)
        setattr(module, name, _Recorder(_jit_of(saved[module, name]), rec))
    saved_resolve = kpkg.resolve_backend
    kpkg.resolve_backend = lambda requested, device: requested  # the launches are recorded, never run
    try:
        with _CountOps(rec.torch_ops):
            yield rec
    finally:
        for (module, name), fn in saved.items():
            setattr(module, name, fn)
        kpkg.resolve_backend = saved_resolve


def _jit_of(fn):
    """The JITFunction of a kernel object: itself, the one under an autotuner, or (under
    TRITON_INTERPRET=1, where @triton.jit returns an interpreted function) one made from its source."""
    while not hasattr(fn, "params") and hasattr(fn, "fn"):
        fn = fn.fn
    if not hasattr(fn, "params"):
        from triton.runtime.jit import JITFunction

        fn = JITFunction(fn)
    return fn
