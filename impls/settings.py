"""The speed settings each backend declares: what an expert would switch on, one at a time.

A `Setting` is data: its name, what it toggles in the framework's own words, the
devices it exists on, and how it is applied. `nnparity settings` times a cell with
its default and with each setting toggled alone, and checks the gradients of each
against the float64 reference (`bench.settings`). Two scopes:

- "process": read by the framework once, at import (thread pools, environment
  variables, XLA flags): the setting gets worker processes of its own, which set
  `env` / `xla_flags` / `threads` before the framework is imported.
- "program": a property of one Program, applied by `Backend.build`: another
  `variant` (`torch.compile` is the torch variant "compile"), a precision mode of
  `impls.base.PRECISIONS` (mixed precision, TF32), or build `options` the backend
  declares in `Backend.program_options` (torch compile mode, channels_last, ...).

A setting for a device that is not present, or one this install cannot apply
(`unavailable`), is n/a, never an error. Settings apply to cells of the backend's
default variant (`DEFAULT_VARIANTS`) unless `from_variants` says otherwise, and only
to the tasks and phases they name. This module imports no framework and no `bench`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

#: the variant a backend's cells run by default (its `Backend.variants[0]`)
DEFAULT_VARIANTS: dict[str, str] = {
    "numpy": "reference",
    "torch": "eager",
    "jax": "jit",
    "tensorflow": "function",
}
SCOPES = ("process", "program")
THREAD_CHOICES = ("1", "half", "all")


@dataclass(frozen=True)
class Setting:
    name: str  # unique within its backend; a word users type with --settings
    backend: str
    what: str  # what it toggles, in the framework's own words
    devices: tuple[str, ...] = ("cpu",)
    scope: str = "program"
    variant: str = ""  # build this variant instead of the cell's
    options: tuple[tuple[str, Any], ...] = ()  # `Backend.build(options=...)`
    precision: str = "fp32"  # a mode of impls.base.PRECISIONS
    env: tuple[tuple[str, str], ...] = ()  # process: set before the framework loads
    xla_flags: tuple[str, ...] = ()  # process: appended to XLA_FLAGS
    threads: str = ""  # process: intra-op threads, one of THREAD_CHOICES
    unset: tuple[str, ...] = ()  # process: environment variables removed before it starts
    #: n/a unless this environment variable is set where the sweep starts (a setting that
    #: undoes what the environment pins)
    needs_env: str = ""
    #: why a sweep runs it only when asked by name ("" = swept by default)
    by_name_only: str = ""
    tasks: tuple[str, ...] = ()  # only cells of these tasks (() = every task)
    phases: tuple[str, ...] = ()  # only these phases (() = every phase)
    from_variants: tuple[str, ...] = ()  # cells of these variants (() = the default one)
    unavailable: str = ""  # declared, but this install cannot apply it: why (n/a)
    #: why it is too slow to sweep by default beyond the tiny preset ("" = not); a sweep
    #: still runs it when asked by name
    slow: str = ""

    @property
    def key(self) -> str:
        return f"{self.backend}:{self.name}"

    def applies(self, task: str, variant: str, phase: str, device: str) -> str:
        """"" when the setting applies to this cell, else why it is n/a."""
        if self.unavailable:
            return self.unavailable
        if self.needs_env and not os.environ.get(self.needs_env):
            return f"the environment sets no {self.needs_env}"
        if device not in self.devices:
            return f"{', '.join(self.devices)} only"
        if self.tasks and task not in self.tasks:
            return f"{', '.join(self.tasks)} only"
        if self.phases and phase not in self.phases:
            return f"{', '.join(self.phases)} phase only"
        wanted = self.from_variants or (DEFAULT_VARIANTS[self.backend],)
        if variant not in wanted:
            return f"from {', '.join(wanted)} only"
        return ""


def resolve_threads(choice: str, cores: int | None = None) -> int:
    """Intra-op threads for "1", "half" or "all" of `cores` (default: this machine's)."""
    cores = cores or os.cpu_count() or 1
    return {"1": 1, "half": max(1, cores // 2), "all": cores}[choice]


def _threads(backend: str, library: str) -> tuple[Setting, ...]:
    return tuple(
        Setting(f"threads={c}", backend, f"{library}: {c}", scope="process",
                threads=c, devices=("cpu",))
        for c in ("1", "half"))  # "all" is every backend's default (impls.threads)


_CNN, _RNN = ("cnn_classification",), ("rnn_sequence",)
_COMPILE = "torch.compile(fn{})"
_TF_THREADING = "tf.config.threading.set_{}_op_parallelism_threads"

SETTINGS: dict[str, tuple[Setting, ...]] = {
    "numpy": _threads("numpy", "BLAS threads (threadpoolctl, OPENBLAS/MKL/OMP_NUM_THREADS)") + (
        # some machines pin OpenBLAS's kernel (older builds compute wrongly or crash on
        # their processor) and that slows a current numpy: the setting lets OpenBLAS pick
        # its kernel for the processor, and the worker records which one it ran
        Setting("blas-coretype-auto", "numpy", "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE "
                "unset (OpenBLAS detects its kernel)", scope="process",
                unset=("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"), needs_env="OPENBLAS_CORETYPE",
                by_name_only="the pin guards older OpenBLAS builds that compute wrongly or "
                             "crash on this processor"),
    ),
    "torch": _threads("torch", "torch.set_num_threads") + (
        Setting("compile", "torch", _COMPILE.format(""), variant="compile",
                devices=("cpu", "cuda"), options=(("fullgraph", False),)),
        Setting("compile-fullgraph", "torch", _COMPILE.format(", fullgraph=True"),
                variant="compile", devices=("cpu", "cuda"), options=(("fullgraph", True),)),
        Setting("compile-reduce-overhead", "torch", _COMPILE.format(", mode='reduce-overhead'"),
                variant="compile", devices=("cpu",),
                options=(("compile_mode", "reduce-overhead"), ("fullgraph", False))),
        Setting("compile-max-autotune", "torch", _COMPILE.format(", mode='max-autotune'"),
                variant="compile", devices=("cpu", "cuda"),
                options=(("compile_mode", "max-autotune"), ("fullgraph", False))),
        Setting("channels_last", "torch", "x and conv weights in torch.channels_last",
                devices=("cpu", "cuda"), tasks=_CNN, options=(("channels_last", True),)),
        Setting("inference_mode", "torch", "forward under torch.inference_mode() "
                "instead of torch.no_grad()", devices=("cpu", "cuda"), phases=("forward",),
                options=(("inference_mode", True),)),
        Setting("bf16", "torch", "torch.autocast(dtype=torch.bfloat16)",
                devices=("cpu", "cuda"), precision="bf16"),
        Setting("cudnn.benchmark", "torch", "torch.backends.cudnn.benchmark = True",
                devices=("cuda",), options=(("cudnn_benchmark", True),)),
        Setting("tf32", "torch", "torch.backends.cuda.matmul / cudnn fp32_precision = 'tf32'",
                devices=("cuda",), precision="tf32"),
        Setting("cuda-graphs", "torch", _COMPILE.format(", mode='reduce-overhead'") +
                " (CUDA graphs)", variant="compile", devices=("cuda",),
                options=(("compile_mode", "reduce-overhead"), ("fullgraph", False))),
    ),
    "jax": _threads("jax", "XLA_FLAGS intra_op_parallelism_threads") + (
        Setting("eigen-single-thread", "jax", "XLA_FLAGS=--xla_cpu_multi_thread_eigen=false",
                scope="process", xla_flags=("--xla_cpu_multi_thread_eigen=false",)),
        Setting("fast-math", "jax", "XLA_FLAGS=--xla_cpu_enable_fast_math=true",
                scope="process", xla_flags=("--xla_cpu_enable_fast_math=true",)),
        Setting("thunk-runtime-off", "jax", "XLA_FLAGS=--xla_cpu_use_thunk_runtime=false",
                scope="process", xla_flags=("--xla_cpu_use_thunk_runtime=false",),
                unavailable="jaxlib 0.10 ignores it (XLA: 'no longer supported')"),
        Setting("unroll=2", "jax", "lax.scan(..., unroll=2)", devices=("cpu", "cuda"),
                tasks=_RNN, options=(("unroll", 2),)),
        Setting("unroll=8", "jax", "lax.scan(..., unroll=8)", devices=("cpu", "cuda"),
                tasks=_RNN, options=(("unroll", 8),)),
        Setting("unroll=full", "jax", "lax.scan(..., unroll=True)", devices=("cpu", "cuda"),
                tasks=_RNN, options=(("unroll", True),),
                slow="XLA:CPU compiled the fully unrolled standard LSTM's loss in 4m21s "
                     "on 2 loaded cores"),
        Setting("nchw", "jax", "convolutions in NCHW/OIHW (the default on CPU is NHWC/HWIO)",
                devices=("cpu",), tasks=_CNN, options=(("layout", "nchw"),)),
        Setting("nhwc", "jax", "convolutions in NHWC/HWIO (the default on GPU is NCHW)",
                devices=("cuda",), tasks=_CNN, options=(("layout", "nhwc"),)),
        Setting("bf16", "jax", "bfloat16 compute (params cast inside jit)",
                devices=("cpu", "cuda"), precision="bf16"),
        Setting("no-donation", "jax", "jax.jit(step) without donate_argnums",
                devices=("cpu", "cuda"),
                unavailable="the step always donates its buffers; no build option yet"),
        Setting("matmul-precision=tf32", "jax", "jax.default_matmul_precision('tensorfloat32')",
                devices=("cuda",), precision="tf32"),
        Setting("autotune=0", "jax", "XLA_FLAGS=--xla_gpu_autotune_level=0", scope="process",
                devices=("cuda",), xla_flags=("--xla_gpu_autotune_level=0",)),
        Setting("triton-gemm-off", "jax", "XLA_FLAGS=--xla_gpu_enable_triton_gemm=false",
                scope="process", devices=("cuda",),
                xla_flags=("--xla_gpu_enable_triton_gemm=false",)),
    ),
    "tensorflow": _threads("tensorflow", _TF_THREADING.format("intra")) + (
        Setting("interop=1", "tensorflow", _TF_THREADING.format("inter") + ": 1", scope="process",
                env=(("NNPARITY_INTEROP_THREADS", "1"),)),
        Setting("onednn-off", "tensorflow", "TF_ENABLE_ONEDNN_OPTS=0", scope="process",
                env=(("TF_ENABLE_ONEDNN_OPTS", "0"),)),
        Setting("jit_compile", "tensorflow", "tf.function(jit_compile=True)", variant="xla",
                devices=("cpu", "cuda")),
        Setting("mixed-bf16", "tensorflow",
                "bfloat16 compute, float32 variables (Keras 'mixed_bfloat16')",
                devices=("cpu", "cuda"), precision="bf16"),
        Setting("mixed-fp16", "tensorflow", "Keras mixed precision 'mixed_float16' "
                "(loss scaling)", devices=("cuda",), precision="fp16"),
        Setting("tf32", "tensorflow", "tf.config.experimental.enable_tensor_float_32_execution",
                devices=("cuda",), precision="tf32"),
    ),
}


def apply_process_environment(env: Any = (), xla_flags: Any = (), unset: Any = ()) -> None:
    """A process setting's environment, in this process, before any framework (or numpy's
    BLAS) is loaded: variables removed, variables set, flags appended to XLA_FLAGS. The
    one place the settings sweep's workers and a tuned run's workers do it."""
    for key in unset or ():
        os.environ.pop(str(key), None)
    for key, value in env or ():
        os.environ[str(key)] = str(value)
    flags = [str(f) for f in xla_flags or ()]
    if flags:
        os.environ["XLA_FLAGS"] = " ".join([*os.environ.get("XLA_FLAGS", "").split(), *flags])


def settings_for(backend: str) -> tuple[Setting, ...]:
    return SETTINGS.get(backend, ())


def find(backend: str, name: str) -> Setting | None:
    return next((s for s in settings_for(backend) if s.name == name), None)
