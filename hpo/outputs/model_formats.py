"""Deployment file formats (ONNX, TorchScript): writing, running and the metadata inside them.

ONNX uses torch's TorchScript-based exporter (`dynamo=False`): it needs neither onnxscript nor
a network, handles every registered backbone, and gives a dynamic batch axis. TorchScript uses
`torch.jit.trace`. Both are deprecated in torch 2.14 in favour of `torch.export`, whose
runtimes are not deployment formats here yet; their warnings are hushed.
"""

from __future__ import annotations

import json
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from backbones import Registry

from ..errors import ConfigError, UnknownNameError

__all__ = [
    "FORMATS",
    "INPUT_NAME",
    "METADATA_KEY",
    "OUTPUT_NAME",
    "ExportFormat",
    "Runner",
    "format_named",
    "load_exported",
    "read_metadata",
]

METADATA_KEY = "vcr_hpo"  # ONNX metadata_props key; TorchScript extra file `vcr_hpo.json`
INPUT_NAME, OUTPUT_NAME = "images", "logits"

Runner = Callable[[np.ndarray], np.ndarray]  # float32 NCHW batch -> float32 logits


class ExportFormat(ABC):
    """One deployment format: how to write a model, open it at a thread count, carry metadata."""

    name: str
    suffix: str  # the exported file name ends so; `load_exported` tells formats by it
    runtime: str

    def check_available(self) -> None:
        """Raise ConfigError when the runtime this format needs is not installed."""

    @abstractmethod
    def write(self, model: nn.Module, example: torch.Tensor, path: Path) -> None: ...

    @abstractmethod
    def open(self, path: Path, threads: int | None) -> Runner:
        """A runner of the file; `threads` None leaves the thread count as it is."""

    @abstractmethod
    def add_metadata(self, path: Path, text: str) -> None: ...

    @abstractmethod
    def metadata(self, path: Path) -> str | None: ...


FORMATS: Registry[ExportFormat] = Registry("export format", error=UnknownNameError)


class _Onnx(ExportFormat):
    name, suffix = "onnx", ".onnx"

    @property
    def runtime(self) -> str:  # type: ignore[override]
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"

    def check_available(self) -> None:
        missing = []
        for module in ("onnx", "onnxruntime"):
            try:
                __import__(module)
            except ImportError:
                missing.append(module)
        if missing:
            raise ConfigError(f"--format onnx: needs the packages onnx and onnxruntime, got "
                              f"no {' and no '.join(missing)}. Install the extra: "
                              "pip install 'vcr-hpo[onnx]' (or use --format torchscript)")

    def write(self, model: nn.Module, example: torch.Tensor, path: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(
                model, (example,), str(path), dynamo=False, opset_version=17,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )

    def open(self, path: Path, threads: int | None) -> Runner:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]

    def add_metadata(self, path: Path, text: str) -> None:
        import onnx

        proto = onnx.load(str(path))
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, text
        onnx.save(proto, str(path))

    def metadata(self, path: Path) -> str | None:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), None)


class _TorchScript(ExportFormat):
    name, suffix = "torchscript", ".torchscript.pt"
    runtime = f"torch.jit {torch.__version__}"
    _extra = f"{METADATA_KEY}.json"

    def write(self, model: nn.Module, example: torch.Tensor, path: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notices
            traced = torch.jit.trace(model, example, check_trace=False)
            torch.jit.save(traced, str(path))

    def _load(self, path: Path, extra: dict[str, Any] | None = None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(str(path), map_location="cpu", _extra_files=extra or {})

    def open(self, path: Path, threads: int | None) -> Runner:
        module = self._load(path).eval()

        def run(x: np.ndarray) -> np.ndarray:
            before = torch.get_num_threads()
            if threads is not None:
                torch.set_num_threads(threads)
            try:
                with torch.inference_mode():
                    return module(torch.from_numpy(x)).numpy()
            finally:
                torch.set_num_threads(before)

        return run

    def add_metadata(self, path: Path, text: str) -> None:
        module = self._load(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(module, str(path), _extra_files={self._extra: text})

    def metadata(self, path: Path) -> str | None:
        extra = {self._extra: ""}
        self._load(path, extra)
        return extra[self._extra] or None


FORMATS.register("onnx", _Onnx())
FORMATS.register("torchscript", _TorchScript())


def format_named(name: str) -> ExportFormat:
    """The format registered as `name`.

    Raises:
        UnknownNameError: `--format: unknown export format ...`, listing the formats.
    """
    try:
        return FORMATS.get(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"--format: {exc}") from None


def _format_of_file(path: Path) -> ExportFormat:
    for name in FORMATS.names():
        fmt = FORMATS.get(name)
        if path.name.endswith(fmt.suffix):
            return fmt
    suffixes = ", ".join(FORMATS.get(n).suffix for n in FORMATS.names())
    raise ConfigError(f"--model: an exported file must end in {suffixes}, got {str(path)!r}. "
                      "Give a file `vcr-hpo export` wrote, or the folder `vcr-hpo train` wrote")


def read_metadata(path: Path) -> dict[str, Any]:
    """The metadata inside an exported file (what `<file>.json` holds).

    Raises:
        ConfigError: not an exported file, or one without vcr-hpo metadata.
    """
    path = Path(path)
    f = _format_of_file(path)
    f.check_available()
    try:
        text = f.metadata(path)
        meta = json.loads(text) if text else None
    except Exception as exc:  # noqa: BLE001 - a damaged file: one line
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise ConfigError(f"--model: {path}: must be a file `vcr-hpo export` wrote ({f.name}), "
                          f"got {type(exc).__name__}: {first}. Export it again") from None
    if not isinstance(meta, dict) or "class_names" not in meta or "config" not in meta:
        raise ConfigError(f"--model: {path}: must carry vcr-hpo metadata (class names, "
                          "preprocessing), got none. Export it with `vcr-hpo export`")
    return meta


class _Exported(nn.Module):
    """An exported file run like the torch model: normalised float batch in, logits out (CPU)."""

    def __init__(self, runner: Runner) -> None:
        super().__init__()
        self.runner = runner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.runner(x.detach().float().cpu().contiguous().numpy()))


def load_exported(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """(module, metadata) of an exported file; the module runs on the CPU in fp32.

    Raises:
        ConfigError: see `read_metadata`; a missing runtime names the extra to install.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--model: must be a folder written by `vcr-hpo train` or a file "
                          f"`vcr-hpo export` wrote, got {str(path)!r} (no such file)")
    meta = read_metadata(path)
    f = _format_of_file(path)
    return _Exported(f.open(path, None)).eval(), meta
