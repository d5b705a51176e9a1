"""The raw results format's checker: `problems(doc, file)` lists what is wrong with a document.

One results file is one pytest-benchmark JSON document (docs/results-format.md
documents it, docs/results-format.schema.json is the same contract as a JSON
Schema). `problems` returns one line per problem, each naming the file and,
inside it, the benchmark (by cell id when it has one) and the field; an empty
list means the document is in the format. It checks types, not timings: a cell
may be slow or noisy and still valid, but a sample that is not a positive finite
number of seconds, a batch size that is not an integer, or a `gflops` that is
not a number is a corruption every reader would trip over later.

Version 1 is the format before versioning (no `format_version`); version 2
(`FORMAT_VERSION`) adds the environment fields to `machine_info["nnparity"]`
and requires them. A version newer than this checker knows is a problem.

This module reads no file, prints nothing and imports no framework;
`nnparity validate` (bench/commands/validate.py) is its command.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from bench.results.schema import CALIBRATION, FORMAT_VERSION, PHASES, parse_cell_id

STATUSES = ("ok", "error")

Check = Callable[[Any], bool]
#: nesting deeper than this is not something the harness writes (it writes at most 5)
MAX_DEPTH = 32
#: limits on what any results file may hold (docs/results-format.md, "Limits"): a file
#: larger than MAX_FILE_BYTES is refused before it is parsed; an integer literal of
#: more than MAX_INT_DIGITS digits is refused while parsing (Python's own limit is a
#: traceback at 4300); every integer field lies within +-MAX_INT; one cell holds at
#: most MAX_SAMPLES samples; a string is at most MAX_STRING characters, a name (backend,
#: variant, device, dtype, preset) at most 64 of NAME's characters
MAX_FILE_BYTES = 64 * 2**20
MAX_INT_DIGITS = 19
MAX_INT = 2**63 - 1
MAX_SAMPLES = 100_000
MAX_STRING = 65_536
NAME = re.compile(r"[A-Za-z0-9_.+=-]{0,64}")
#: a cell id: its parts (a task label with knobs, names) joined by "/"
CELL = re.compile(r"[A-Za-z0-9_.,:+=\[\]/-]{1,512}")
FINGERPRINT = re.compile(r"[A-Za-z0-9_.+-]{1,64}")


class BigInt(str):
    """What the reader's JSON parser returns for an integer literal of more than
    MAX_INT_DIGITS digits: kept as text, so the checker can name the field."""


def parse_int(text: str) -> int | BigInt:
    """`json.loads(parse_int=...)`: a bounded integer, never Python's digit-limit error."""
    return int(text) if len(text) <= MAX_INT_DIGITS + 1 else BigInt(text)


def _is_int_type(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _digits(v: Any) -> str:
    if isinstance(v, str):
        return str(len(v.lstrip("-")))
    return str(len(str(abs(v)))) if v.bit_length() < 10_000 else "over 3000"


def _walk(value: Any, file: str) -> list[str]:
    """Size limits that hold anywhere in the document, found without recursion:
    nesting depth, integers too long to be read, strings too long to print.
    One line naming the first offender's path."""
    stack = [(value, 1, "")]
    while stack:
        item, level, path = stack.pop()
        if isinstance(item, BigInt) or (_is_int_type(item) and abs(item) >= 10**MAX_INT_DIGITS):
            return [f"{file}: {path.lstrip('.')}: an integer of {_digits(item)} digits "
                    f"(at most {MAX_INT_DIGITS})"]
        if isinstance(item, str):
            if len(item) > MAX_STRING:
                return [f"{file}: {path.lstrip('.')}: a string of {len(item)} characters "
                        f"(at most {MAX_STRING})"]
            continue
        if not isinstance(item, dict | list):
            continue
        if level > MAX_DEPTH:
            return [f"{file}: nested deeper than {MAX_DEPTH} levels; the harness writes at "
                    "most 5: not a results document"]
        if isinstance(item, dict):
            stack.extend((v, level + 1, f"{path}.{k}") for k, v in item.items())
        elif path.endswith(".data"):  # samples: numbers, checked by _samples
            stack.extend((v, level + 1, f"{path}[{i}]") for i, v in enumerate(item)
                         if isinstance(v, str | dict | list))
        else:
            stack.extend((v, level + 1, f"{path}[{i}]") for i, v in enumerate(item))
    return []


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -MAX_INT <= v <= MAX_INT


def _is_num(v: Any) -> bool:
    return (isinstance(v, float) or _is_int(v)) and math.isfinite(v)


def _is_real(v: Any) -> bool:
    """A number, NaN allowed (a measurement that failed is written as NaN)."""
    return isinstance(v, float) or _is_int(v)


def _opt(check: Check) -> Check:
    return lambda v: v is None or check(v)


def _is_str(v: Any) -> bool:
    return isinstance(v, str) and len(v) <= MAX_STRING


def _is_name(v: Any) -> bool:
    return isinstance(v, str) and NAME.fullmatch(v) is not None


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, bool | str) or _is_real(v)


def _fields(spec: dict[str, Check]) -> Check:
    """An object whose listed keys, where present, pass their checks (others: scalars
    or anything, as the writer may add fields)."""
    return lambda v: isinstance(v, dict) and all(k not in v or c(v[k]) for k, c in spec.items())


def _scalar_map(v: Any) -> bool:
    return isinstance(v, dict) and all(_scalar(x) for x in v.values())


def _list_of(check: Check) -> Check:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def _nonneg_int(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _nonneg_num(v: Any) -> bool:
    return _is_num(v) and v >= 0


def _pos_int(v: Any) -> bool:
    return _is_int(v) and v > 0


def _pos_num(v: Any) -> bool:
    return _is_num(v) and v > 0


def _str_dict(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and _is_str(x) for k, x in v.items())


def _list_of_dicts(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, dict) for x in v)


#: what the report reads inside extra_info.gradcheck (bench.agreement.check.summary)
GRADCHECK = _fields({"passed": _opt(_is_bool), "verdict": _is_str, "max_rel_err": _opt(_is_real),
                     "tolerance": _opt(_is_real), "aligned_rel_err": _opt(_is_real),
                     "kink_flips": _opt(_nonneg_int), "worst_tensor": _is_str,
                     "error": _is_str})
#: ... and inside extra_info.precision_error (bench.agreement.precision.precision_error)
PRECISION_ERROR = _fields({
    "precision": _is_str, "loss_rel_err": _opt(_is_real), "output_rel_err": _opt(_is_real),
    "grad_rel_err": _opt(_is_real), "trajectory_rel_err": _opt(_is_real),
    "worst_grad": _is_str, "trajectory_steps": _opt(_nonneg_int), "optimizer": _is_str,
    "expected": lambda v: isinstance(v, dict) and all(
        isinstance(r, list) and len(r) == 2 and all(_is_num(x) for x in r) for r in v.values()),
    "flags": _list_of(_is_str), "within": _is_bool, "error": _is_str})
#: machine_info.nnparity.framework_threads: each backend's threads as run
_THREADS = _fields({"intra_op": _opt(_pos_int), "inter_op": _opt(_nonneg_int),
                    "inter_op_source": _is_str})


#: the run block (bench.timing.runner: rounds, their order's seed, the machine's load)
_LOADS = _list_of(_nonneg_num)
NNPARITY_RUN = _fields({
    "rounds": _pos_int, "rounds_run": _nonneg_int, "order_seed": _is_int,
    "extra_rounds": _list_of(_nonneg_int), "target_ci": _opt(_nonneg_num),
    # a tuned run: backend -> setting name, and "source" (where they came from)
    "settings": lambda v: isinstance(v, dict) and len(v) <= 64 and all(
        _is_name(k) and (_is_str(x) if k == "source" else _is_name(x)) for k, x in v.items()),
    "machine_load": _fields({"loadavg_run_start": _LOADS, "loadavg_before": _LOADS,
                             "loadavg_after": _LOADS, "others_cpu_share": _opt(_nonneg_num),
                             "cores": _pos_int})})


def _framework_threads(v: Any) -> bool:
    return isinstance(v, dict) and all(_THREADS(t) and _scalar_map(t) for t in v.values())


#: extra_info fields: (check, what it must be). Every CellRecord field is here
#: (tests/test_validate.py holds the two in step); the first nine are required.
EXTRA_INFO: dict[str, tuple[Check, str]] = {
    "cell": (lambda v: isinstance(v, str) and CELL.fullmatch(v) is not None,
             "a cell id (letters, digits, _ . , : + = [ ] - and /; at most 512)"),
    "task": (_is_str, "a string"),
    "backend": (_is_name, "a name (letters, digits, _ . + = -; at most 64)"),
    "variant": (_is_name, "a name (letters, digits, _ . + = -; at most 64)"),
    "device": (_is_name, "a name (letters, digits, _ . + = -; at most 64)"),
    "dtype": (_is_name, "a name (letters, digits, _ . + = -; at most 64)"),
    "batch_size": (_opt(_pos_int), "a positive integer or null"),
    "phase": (lambda v: v in (*PHASES, CALIBRATION), f"one of {', '.join((*PHASES, CALIBRATION))}"),
    "status": (lambda v: v in STATUSES, f"one of {', '.join(STATUSES)}"),
    "preset": (_is_name, "a name (letters, digits, _ . + = -; at most 64)"),
    "knobs": (_str_dict, "an object of strings"),
    "error": (_is_str, "a string"),
    "flops": (_opt(_nonneg_int), "a non-negative integer or null"),
    "flops_per_s": (_opt(_nonneg_num), "a non-negative finite number or null"),
    "peak_memory_bytes": (_opt(_nonneg_int), "a non-negative integer or null"),
    "memory_source": (_is_str, "a string"),
    "memory_method": (_is_str, "a string"),
    "memory_scope": (_is_str, "a string"),
    "memory_growth_bytes": (_opt(_is_int), "an integer or null"),
    "gradcheck": (GRADCHECK, "an object: passed boolean, verdict/error strings, "
                  "max_rel_err/tolerance numbers, kink_flips a non-negative integer"),
    "precision": (_is_str, "a string"),
    "precision_mode": (_is_name, "a name (fp32, tf32, bf16 or fp16)"),
    "precision_error": (PRECISION_ERROR, "an object: *_rel_err numbers, flags a list of "
                        "strings, expected an object of [low, high] number pairs"),
    "threads": (_opt(_pos_int), "a positive integer or null"),
    "retraces": (_opt(_nonneg_int), "a non-negative integer or null"),
    "warmup_calls": (_opt(_nonneg_int), "a non-negative integer or null"),
    "warmup_stable": (_opt(_is_bool), "true, false or null"),
    "warmup_settled": (_opt(_is_bool), "true, false or null"),
    "round_sizes": (lambda v: isinstance(v, list) and all(_pos_int(n) for n in v),
                    "a list of positive integers"),
    "round_positions": (lambda v: isinstance(v, list) and all(_nonneg_int(n) for n in v),
                        "a list of non-negative integers"),
    "median_ci": (lambda v: isinstance(v, list) and len(v) in (0, 2)
                  and all(_nonneg_num(x) for x in v), "[] or [low, high] in seconds"),
    "unstable": (_is_str, "a string"),
    "setting": (lambda v: v == "" or _is_name(v),
                "\"\" or a name (letters, digits, _ . + = -; at most 64)"),
    "build_s": (_opt(_nonneg_num), "a non-negative finite number or null"),
    "compiler_startup_s": (_opt(_nonneg_num), "a non-negative finite number or null"),
    "gflops": (_opt(_pos_num), "a positive finite number or null"),
    "gemm_size": (_opt(_pos_int), "a positive integer or null"),
}
REQUIRED_EXTRA = ("cell", "task", "backend", "variant", "device", "dtype", "batch_size", "phase",
                  "status")

#: machine_info["nnparity"] fields by the version that introduced them; a version's
#: file must carry its own fields and every earlier version's
ENVIRONMENT: dict[int, dict[str, tuple[Check, str]]] = {
    1: {
        "fingerprint": (lambda v: isinstance(v, str) and FINGERPRINT.fullmatch(v) is not None,
                        "a fingerprint (letters, digits, _ . + -; at most 64)"),
        "cpu": (_is_str, "a string"),
        "cores": (_pos_int, "a positive integer"),
        "gpu": (_is_str, "a string"),
        "threads": (_pos_int, "a positive integer"),
        "frameworks": (_str_dict, "an object of version strings"),
        "git_commit": (_is_str, "a string"),
        "date": (_is_str, "a string"),
        "python": (_is_str, "a string"),
    },
    2: {
        "format_version": (_pos_int, "a positive integer"),
        "gpu_software": (_str_dict, "an object of version strings"),
        "blas": (_list_of_dicts, "a list of objects"),
        "openblas_coretype": (_is_str, "a string"),
        "thread_settings": (_fields({"env": _scalar_map}), "an object (env: an object of "
                                                             "scalars)"),
        "precision_settings": (lambda v: isinstance(v, dict) and all(
            _scalar_map(x) if k == "env" else _scalar(x) for k, x in v.items()),
            "an object of scalars (env: an object of scalars)"),
    },
}
#: optional fields of machine_info["nnparity"] in any version, checked when present
OPTIONAL_ENVIRONMENT: dict[str, tuple[Check, str]] = {
    "framework_threads": (_framework_threads, "an object of per-backend objects (intra_op, "
                                             "inter_op integers, inter_op_source a string)"),
    "precisions": (_list_of(_is_name), "a list of precision names"),
    "ray_node": (_fields({"name": _is_str}), "an object (name a string)"),
}
#: version-1 files were also written by `baseline update` with only these
REQUIRED_V1 = ("fingerprint",)


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(v), type(v).__name__)


def _show(v: Any) -> str:
    text = repr(v) if isinstance(v, str | int | float | bool) else _type_name(v)
    return text if len(text) <= 40 else text[:37] + "..."


def format_version(doc: Any) -> int | None:
    """The document's declared version: 1 when it declares none, None when unreadable."""
    try:
        v = doc["machine_info"]["nnparity"].get("format_version", 1)
    except (KeyError, TypeError, AttributeError):
        return 1
    return v if _pos_int(v) else None


def _environment(block: Any, where: str) -> list[str]:
    if not isinstance(block, dict):
        return [f"{where}: machine_info.nnparity must be an object, got {_type_name(block)}"]
    out = []
    version = block.get("format_version", 1)
    if not _pos_int(version):
        return [f"{where}: machine_info.nnparity.format_version must be a positive integer, "
                f"got {_show(version)}"]
    if version > FORMAT_VERSION:
        return [f"{where}: format_version {version} is newer than this checker "
                f"(knows up to {FORMAT_VERSION}); update nnparity"]
    for v, fields in [*ENVIRONMENT.items(), (0, OPTIONAL_ENVIRONMENT)]:
        for key, (check, what) in fields.items():
            if v == 0:
                if key in block and not check(block[key]):
                    out.append(f"{where}: machine_info.nnparity.{key} must be {what}, "
                               f"got {_show(block[key])}")
                continue
            required = v <= version and (version > 1 or key in REQUIRED_V1)
            if key not in block:
                if required:
                    out.append(f"{where}: machine_info.nnparity.{key} is missing "
                               f"(required by format version {version})")
                continue
            if not check(block[key]):
                out.append(f"{where}: machine_info.nnparity.{key} must be {what}, "
                           f"got {_show(block[key])}")
    return out


def _samples(stats: dict[str, Any], status: Any, where: str) -> list[str]:
    data = stats.get("data")
    if not isinstance(data, list):
        return [f"{where}: stats.data must be a list of samples (seconds), "
                f"got {_type_name(data)}"]
    if len(data) > MAX_SAMPLES:
        return [f"{where}: stats.data holds {len(data)} samples (at most {MAX_SAMPLES} a cell)"]
    out = []
    bad = [(i, x) for i, x in enumerate(data) if not _pos_num(x)]
    if bad:
        i, x = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        out.append(f"{where}: stats.data[{i}] is {_show(x)}: every sample must be a positive "
                   f"finite number of seconds{more}")
    if status == "ok" and not data:
        out.append(f"{where}: status is ok but stats.data holds no samples")
    rounds = stats.get("rounds")
    if rounds is not None and (not _nonneg_int(rounds) or (data and rounds != len(data))):
        out.append(f"{where}: stats.rounds is {_show(rounds)} but stats.data holds "
                   f"{len(data)} samples")
    if status == "ok":
        for key in ("median", "iqr", "min", "max", "mean"):
            if key in stats and not _nonneg_num(stats[key]):
                out.append(f"{where}: stats.{key} must be a non-negative finite number, "
                           f"got {_show(stats[key])}")
    return out


def _benchmark(bench: Any, index: int, file: str) -> list[str]:
    where = f"{file}: benchmarks[{index}]"
    if not isinstance(bench, dict):
        return [f"{where} must be an object, got {_type_name(bench)}"]
    extra = bench.get("extra_info")
    if isinstance(extra, dict) and EXTRA_INFO["cell"][0](extra.get("cell")):
        where = f"{file}: {extra['cell']}"  # a well-formed id: one line, no markup
    out = []
    if not isinstance(bench.get("name"), str):
        out.append(f"{where}: name must be a string, got {_type_name(bench.get('name'))}")
    if not isinstance(extra, dict):
        out.append(f"{where}: extra_info must be an object, got {_type_name(extra)}")
        extra = {}
    else:
        for key in REQUIRED_EXTRA:
            if key not in extra:
                out.append(f"{where}: extra_info.{key} is missing")
        for key, (check, what) in EXTRA_INFO.items():
            if key in extra and not check(extra[key]):
                out.append(f"{where}: extra_info.{key} must be {what}, got {_show(extra[key])}")
        out += _consistent(extra, where)
    stats = bench.get("stats")
    if not isinstance(stats, dict):
        out.append(f"{where}: stats must be an object, got {_type_name(stats)}")
    else:
        # an unreadable extra_info leaves the status unknown: only the samples are checked
        out += _samples(stats, extra.get("status"), where)
    return out


def _consistent(extra: dict[str, Any], where: str) -> list[str]:
    """The cell id and the dimensions beside it must say the same thing."""
    cell = extra.get("cell")
    if not isinstance(cell, str):
        return []
    try:
        parts = parse_cell_id(cell)
    except ValueError as exc:
        return [f"{where}: extra_info.cell: {exc}"]
    out = []
    for key in ("backend", "device", "dtype", "phase"):
        value = extra.get(key)
        if EXTRA_INFO[key][0](value) and value != getattr(parts, key):  # a bad type: said once
            out.append(f"{where}: extra_info.{key} is {value!r} but the cell id says "
                       f"{getattr(parts, key)!r}")
    bs = extra.get("batch_size")
    if (bs is None or _is_int(bs)) and bs != parts.batch_size:
        out.append(f"{where}: extra_info.batch_size is {_show(bs)} but the cell id says "
                   f"{_show(parts.batch_size)}")
    if extra.get("phase") == CALIBRATION and extra.get("status") == "ok" \
            and extra.get("gflops") is None:
        out.append(f"{where}: a calibration cell that ran ok must carry gflops")
    return out


def problems(doc: Any, file: str) -> list[str]:
    """Every way `doc` (one parsed results file, named `file` in the messages) departs
    from the raw results format; [] when it is valid."""
    if not isinstance(doc, dict):
        return [f"{file}: not a results document: the top level must be an object, "
                f"got {_type_name(doc)}"]
    limits = _walk(doc, file)
    if limits:
        return limits
    benches = doc.get("benchmarks")
    if not isinstance(benches, list):  # not a results document at all: one line says so
        return [f"{file}: not a results document: benchmarks must be a list, "
                f"got {_type_name(benches)}"]
    out = []
    machine = doc.get("machine_info")
    if not isinstance(machine, dict):
        out.append(f"{file}: machine_info must be an object, got {_type_name(machine)}")
    elif "nnparity" not in machine:
        out.append(f"{file}: machine_info.nnparity (the environment block) is missing")
    elif "cpu" in machine and not _fields({"brand_raw": _is_str})(machine["cpu"]):
        out.append(f"{file}: machine_info.cpu must be an object (pytest-benchmark's, "
                   f"brand_raw a string), got {_show(machine['cpu'])}")
    else:
        out += _environment(machine["nnparity"], file)
    if "commit_info" in doc and not _fields({"id": _opt(_is_str)})(doc["commit_info"]):
        out.append(f"{file}: commit_info must be an object (id a string), "
                   f"got {_show(doc['commit_info'])}")
    if "nnparity_run" in doc and not NNPARITY_RUN(doc["nnparity_run"]):
        out.append(f"{file}: nnparity_run must be an object (rounds a positive integer, "
                   "order_seed an integer, extra_rounds non-negative integers, machine_load "
                   "with load averages as lists of non-negative numbers, others_cpu_share a "
                   "non-negative number or null, cores a positive integer, settings an object "
                   f"of names), got "
                   f"{_show(doc['nnparity_run'])}")
    if "datetime" in doc and not _opt(_is_str)(doc["datetime"]):
        out.append(f"{file}: datetime must be a string, got {_show(doc['datetime'])}")
    for i, bench in enumerate(benches):
        out += _benchmark(bench, i, file)
    return out
