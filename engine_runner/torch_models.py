"""Models the PyTorch engine runs: Hugging Face folders and ``torch.export`` programs (``.pt2``).

What ``enginescope bench MODEL --engine torch`` accepts (:func:`resolve_source`):

- a local **Hugging Face model folder**: ``config.json`` plus weights, ``model.safetensors`` (or shards
  with ``model.safetensors.index.json``); a tokenizer (``tokenizer.json`` ...) is used when present;
- a **hub id** (``org/name``), resolved through the local Hugging Face cache only
  (``huggingface_hub.snapshot_download(..., local_files_only=True)``): this machine has no network, so
  a model that is not cached is an error saying so;
- a **``torch.export`` program** saved with ``torch.export.save`` (``.pt2``), loaded with
  ``torch.export.load``.

Pickles are refused unless the user passes ``--allow-pickle`` (:func:`check_pickle`): unpickling runs
code chosen by the file's author. In a folder, weights ``pytorch_model*.bin``/``*.pt``/``*.pth``/``*.ckpt``
are pickles; when ``*.safetensors`` weights exist they are the ones loaded (``use_safetensors=True``) and
pickle files beside them are ignored. In a ``.pt2``: entries its configs mark ``use_pickle``, custom/opaque
object constants, legacy ``.pt`` weight files, and sample inputs that PyTorch's restricted loader
(``torch.load(weights_only=True)``) refuses (``torch.export.load`` would then fall back to a full
unpickle). A plain ``.pt``/``.pth``/``.bin`` file is refused: it holds no model definition to run. Model code
is never taken from a folder (``trust_remote_code`` stays False): a config whose architecture is not a
``transformers`` class is refused.

Registration (:func:`register_source`): a Models row by reference (``db.store.add_reference_model``), format
``hf`` or ``pt2``, so runs attach to a model and the Compare/Layers pages show them. Its ``content_hash``
is the SHA-256 of a manifest of every file's (relative path, SHA-256) for a folder, of the file for a
``.pt2``.

Inputs of a Hugging Face model (:func:`hf_input_specs`, by the model class's ``main_input_name``):

- text (``input_ids``; encoders such as BERT, decoder-only models such as GPT-2/Llama): ``input_ids`` and
  ``attention_mask``, int64 ``[batch, sequence]``, ``sequence`` = ``--seq-len`` (default 128);
  ``token_type_ids`` is not fed (BERT-like models then use zeros, what a tokenizer gives one sentence).
  Generated (:func:`generate_hf_inputs`): with a tokenizer, real text (``engine_runner.minilm.SENTENCES``,
  64 English sentences): encoders get one sentence per row, padded/truncated to ``sequence`` (mask 0 on
  padding); decoder-only models get rows packed with consecutive sentences up to ``sequence`` tokens
  (every position a real token, a prefill-shaped forward pass). Row ``i`` starts at sentence
  ``(seed + i) mod 64``. Without a tokenizer: ids uniform in ``[0, vocab_size)`` from
  ``numpy.random.default_rng([seed, crc32(name)])``, mask all ones.
- vision (``pixel_values``): float32 ``[batch, num_channels, H, W]`` from ``image_size``/``num_channels`` of
  the config (a config without ``image_size``: symbolic ``height``/``width``, default
  :data:`DEFAULT_IMAGE_SIZE`), N(0, 1) seeded as ``engine_runner.inputs.generate_inputs``.
- anything else (audio, encoder-decoder): only with ``--inputs FILE.npz`` keyed by forward argument names.

Inputs of a ``.pt2``: its user inputs (placeholders) with their dtypes; a dynamic dim is named
``batch`` at axis 0, ``sequence`` at axis 1 of an integer input, else by its symbol (``s53``; set it with
``--dim s53=N``); unset dims default to the program's example inputs; every size must lie in the range the
program was exported for. Data: ``engine_runner.inputs.generate_inputs``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine_runner.inputs import InputSpec, generate_inputs
from profiles import catalog as _catalog
from profiles.errors import EngineError, EngineUnavailableError, InputError, ModelError
from profiles.files import sha256_file

HF_CONFIG = "config.json"
FORMAT_HF = "hf"
FORMAT_PT2 = "pt2"
#: the formats the torch engine runs: the catalogue's (``profiles.catalog``, one source for the dashboard and the job)
TORCH_FORMATS: tuple[str, ...] = _catalog.engine_info("torch").formats
#: Image side when a vision config has no ``image_size``.
DEFAULT_IMAGE_SIZE = 224
#: File suffixes that are pickles (never loaded without ``--allow-pickle``).
PICKLE_SUFFIXES: tuple[str, ...] = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: Weight files transformers loads from a folder: safetensors, then (pickles) PyTorch state dicts.
_PICKLE_WEIGHT_RE = re.compile(r"^(pytorch_model.*\.bin|.*\.(pt|pth|ckpt))$")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "tokenizer.model", "vocab.json",
                    "spiece.model", "sentencepiece.bpe.model")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise EngineUnavailableError(f"the torch engine needs PyTorch ({exc}); pip install torch") from None
    return torch


def _transformers() -> Any:
    _offline()
    try:
        import transformers
    except ImportError as exc:
        raise EngineUnavailableError(f"Hugging Face models need transformers ({exc}); pip install transformers") from None
    return transformers


# --------------------------------------------------------------------------------------------------
# Resolution


def resolve_source(text: str) -> tuple[Path, str, str]:
    """Where MODEL points: ``(path, format, display name)``.

    ``text`` is an existing folder (a Hugging Face model folder), an existing ``.pt2`` file, or a hub id
    looked up in the local Hugging Face cache only.

    Raises:
        ModelError: a folder without ``config.json`` (names the file); a pickle file (``.pt``, ``.bin``...);
            another kind of file; a hub id that is not in the local cache (says there is no network).
    """
    p = Path(text).expanduser()
    if p.is_dir():
        if not (p / HF_CONFIG).is_file():
            raise ModelError(f"MODEL {text}: no {HF_CONFIG} in this folder; a Hugging Face model folder holds "
                             f"{HF_CONFIG} and its weights (model.safetensors)")
        return p.resolve(), FORMAT_HF, p.resolve().name
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".pt2":
            return p.resolve(), FORMAT_PT2, p.name
        if suffix in PICKLE_SUFFIXES:
            raise ModelError(f"MODEL {text}: a {suffix} file is a pickle (torch.save), which runs code when loaded "
                             "and holds no model definition EngineScope can run; save the model with "
                             "torch.export.save (.pt2) or save_pretrained (a Hugging Face folder with safetensors)")
        raise ModelError(f"MODEL {text}: the torch engine runs a Hugging Face model folder or a torch.export "
                         f"program (.pt2), not a {suffix or 'suffix-less'} file")
    if _HUB_ID_RE.match(text) and not text.isdigit():
        return _from_hf_cache(text), FORMAT_HF, text
    raise ModelError(f"MODEL {text}: no such file or folder, and not a Hugging Face hub id")


def _from_hf_cache(repo_id: str) -> Path:
    _offline()
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError as exc:
        raise EngineUnavailableError(f"resolving a hub id needs huggingface_hub ({exc})") from None
    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - huggingface_hub raises several error types for a cache miss
        raise ModelError(f"MODEL {repo_id}: no such file or folder here, and as a Hugging Face hub id it is not in "
                         f"the local Hugging Face cache ({constants.HF_HUB_CACHE}); this "
                         "machine has no network, so nothing is downloaded. Download it where there is network "
                         f"(`hf download {repo_id}`) and copy the cache folder here (or set HF_HOME), or pass "
                         f"a local model folder ({type(exc).__name__})") from None
    if not (folder / HF_CONFIG).is_file():
        raise ModelError(f"MODEL {repo_id}: the cached snapshot {folder} has no {HF_CONFIG}")
    return folder


# --------------------------------------------------------------------------------------------------
# Inspection


@dataclass
class SourceInfo:
    """What :func:`inspect_source` found.

    Attributes:
        path: the folder or ``.pt2`` (absolute).
        format: ``hf`` or ``pt2``.
        content_hash: SHA-256 (manifest of the folder's files, or the file's).
        size_bytes: summed file size.
        weights: weight files that will be loaded (relative names), safetensors first.
        pickle_files: pickle files or pickled ``.pt2`` entries (relative names), what ``--allow-pickle`` allows.
        meta: JSON facts (model_type, architecture, main_input, kind, vocab_size, max_positions...).
        param_count: parameters (from safetensors headers or the program's state dict), or None.
        op_histogram: ``.pt2`` only: ``{aten op: count}`` of the graph.
        inputs: input specs (None for a ``.pt2`` that cannot be opened without ``--allow-pickle``).
        warnings: notes for the Models page.
    """

    path: Path
    format: str
    content_hash: str
    size_bytes: int
    weights: list[str] = field(default_factory=list)
    pickle_files: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    param_count: int | None = None
    op_histogram: dict[str, int] = field(default_factory=dict)
    inputs: list[InputSpec] | None = None
    warnings: list[str] = field(default_factory=list)


def _folder_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file() and not any(
        part.startswith(".") for part in f.relative_to(folder).parts))


def read_hf_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a model folder as a dict.

    Raises:
        ModelError: missing or not a JSON object (names the file).
    """
    cfg_path = Path(folder) / HF_CONFIG
    if not cfg_path.is_file():
        raise ModelError(f"{folder}: no {HF_CONFIG}; a Hugging Face model folder holds {HF_CONFIG} and its weights")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{cfg_path}: not readable JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{cfg_path}: not a JSON object")
    return cfg


def safetensors_param_count(path: Path) -> int:
    """Parameters in a ``.safetensors`` file, from its header only (format: 8-byte little-endian header
    length, then a JSON object ``{name: {"dtype", "shape", "data_offsets"}}``; safetensors' documented layout).

    Raises:
        ModelError: not a safetensors file (names it).
    """
    try:
        with Path(path).open("rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n < 100_000_000:
                raise ModelError(f"{Path(path).name}: not a safetensors file (header length {n})")
            header = json.loads(f.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{Path(path).name}: not a readable safetensors file ({exc})") from None
    return sum(int(np.prod(v["shape"])) for k, v in header.items() if k != "__metadata__")


def _folder_weights(folder: Path, files: Sequence[Path]) -> tuple[list[str], list[str]]:
    rel = [f.relative_to(folder).as_posix() for f in files]
    safes = [r for r in rel if r.endswith(".safetensors")]
    pickles = [r for r in rel if _PICKLE_WEIGHT_RE.match(Path(r).name)]
    return safes, pickles


def max_positions(cfg: Mapping[str, Any]) -> int | None:
    """The longest sequence a text config allows (``max_position_embeddings``, ``n_positions``,
    ``max_seq_len``...), None when the config names none (e.g. relative position models)."""
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "max_sequence_length", "seq_length"):
        v = cfg.get(key)
        if isinstance(v, int) and v > 0:
            return v
    return None


def hf_model_class(cfg: Mapping[str, Any]) -> Any:
    """The ``transformers`` class to load: the config's ``architectures[0]`` when transformers has it (the
    model as published: ``BertModel``, ``GPT2LMHeadModel``, ``ResNetForImageClassification``...), else the
    ``AutoModel`` class of its ``model_type``.

    Raises:
        ModelError: the architecture is custom code (``auto_map``/unknown class: EngineScope never runs code
            from a model folder) or the model type is unknown to this transformers.
    """
    tf = _transformers()
    archs = cfg.get("architectures") or []
    if archs:
        cls = getattr(tf, str(archs[0]), None)
        if cls is not None:
            return cls
        if cfg.get("auto_map"):
            raise ModelError(f"{HF_CONFIG}: architecture {archs[0]!r} is custom code shipped with the model "
                             "(auto_map); EngineScope does not run code from model folders (trust_remote_code "
                             "stays off)")
    from transformers.models.auto import modeling_auto

    mtype = cfg.get("model_type")
    name = modeling_auto.MODEL_MAPPING_NAMES.get(str(mtype)) if mtype else None
    cls = getattr(tf, name, None) if isinstance(name, str) else None
    if cls is None:
        raise ModelError(f"{HF_CONFIG}: model_type {mtype!r} / architectures {archs} is not a model class of "
                         f"transformers {tf.__version__}")
    return cls


def hf_model_kind(cfg: Mapping[str, Any], cls: Any) -> str:
    """``encoder`` / ``decoder`` (text, decoder-only) / ``vision`` / ``other`` from the class's
    ``main_input_name`` and the model type (decoder-only: a causal-LM class, or a model type transformers
    maps to a causal LM but not to a masked LM)."""
    main = getattr(cls, "main_input_name", "input_ids")
    if cfg.get("is_encoder_decoder"):
        return "other"
    if main == "pixel_values":
        return "vision"
    if main != "input_ids":
        return "other"
    from transformers.models.auto import modeling_auto

    name = cls.__name__
    mtype = str(cfg.get("model_type"))
    if name.endswith(("ForCausalLM", "LMHeadModel")) or (
            mtype in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            and mtype not in modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES):
        return "decoder"
    return "encoder"


def _image_hw(cfg: Mapping[str, Any]) -> tuple[int | str, int | str]:
    size = cfg.get("image_size")
    if isinstance(size, int) and size > 0:
        return size, size
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size):
        return int(size[0]), int(size[1])
    return "height", "width"


def hf_input_specs(cfg: Mapping[str, Any], kind: str) -> list[InputSpec]:
    """Generated-input specs of a Hugging Face model of ``kind`` (rules in the module doc).

    Raises:
        InputError: ``kind`` ``other`` (needs ``--inputs``, names why).
    """
    if kind in ("encoder", "decoder"):
        return [InputSpec("input_ids", "int64", ("batch", "sequence")),
                InputSpec("attention_mask", "int64", ("batch", "sequence"))]
    if kind == "vision":
        channels = cfg.get("num_channels", 3)
        h, w = _image_hw(cfg)
        return [InputSpec("pixel_values", "float32", ("batch", int(channels), h, w))]
    raise InputError(f"{cfg.get('model_type')!r} ({(cfg.get('architectures') or ['?'])[0]}): EngineScope generates "
                     "inputs for text (input_ids) and vision (pixel_values) models only; pass --inputs FILE.npz "
                     "keyed by the model's forward argument names")


def npz_input_specs(data: Mapping[str, np.ndarray], forward_args: Sequence[str] | None, fname: str) -> list[InputSpec]:
    """Input specs taken from a user's ``--inputs`` file for a Hugging Face model: one per key, its dtype,
    first axis the batch (``batch``), the other axes as in the file. Keys must be forward argument names.

    Raises:
        InputError: a key that is not a forward argument (names it and lists the arguments).
    """
    specs = []
    for key, arr in data.items():
        if forward_args is not None and key not in forward_args:
            raise InputError(f"--inputs {fname}: key {key!r} is not an argument of the model's forward() "
                             f"(arguments: {list(forward_args)})")
        if arr.ndim == 0:
            raise InputError(f"--inputs {fname}: key {key!r} is a scalar; give arrays whose first axis is the samples")
        dims: tuple[int | str | None, ...] = ("batch", *(int(d) for d in arr.shape[1:]))
        specs.append(InputSpec(key, str(arr.dtype), dims))
    return specs


def forward_args(cls: Any) -> list[str]:
    """Named parameters of ``cls.forward`` (what ``--inputs`` keys may be)."""
    import inspect

    params = inspect.signature(cls.forward).parameters
    return [n for n, p in params.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def has_tokenizer(folder: Path) -> bool:
    """True when the folder holds tokenizer files (:data:`_TOKENIZER_FILES`)."""
    return any((Path(folder) / n).is_file() for n in _TOKENIZER_FILES)


def inspect_source(path: Path, fmt: str, *, allow_pickle: bool = False) -> SourceInfo:
    """Hash and inspect a folder or ``.pt2`` (never loads weights; a ``.pt2`` is opened only when it has no
    pickled entries or ``allow_pickle`` is set).

    Raises:
        ModelError: unreadable config, no weights, not a torch.export archive (names the file).
        EngineUnavailableError: transformers/torch missing.
    """
    path = Path(path)
    if fmt == FORMAT_HF:
        return _inspect_hf(path)
    if fmt == FORMAT_PT2:
        return _inspect_pt2(path, allow_pickle)
    raise ModelError(f"{path.name}: format {fmt!r} is not run by the torch engine (formats {TORCH_FORMATS})")


def _inspect_hf(folder: Path) -> SourceInfo:
    cfg = read_hf_config(folder)
    files = _folder_files(folder)
    safes, pickles = _folder_weights(folder, files)
    if not safes and not pickles:
        raise ModelError(f"{folder}: no weights (model.safetensors, or pytorch_model.bin with --allow-pickle) "
                         f"beside {HF_CONFIG}")
    manifest = "".join(f"{f.relative_to(folder).as_posix()}\t{sha256_file(f)}\n" for f in files)
    info = SourceInfo(path=folder, format=FORMAT_HF, content_hash=hashlib.sha256(manifest.encode()).hexdigest(),
                      size_bytes=sum(f.stat().st_size for f in files), weights=safes or pickles,
                      pickle_files=[] if safes else pickles)
    if safes and pickles:
        info.warnings.append(f"pickle weight files {pickles} are ignored: the safetensors weights are loaded")
    cls = hf_model_class(cfg)
    kind = hf_model_kind(cfg, cls)
    info.meta = {"model_type": cfg.get("model_type"), "architecture": cls.__name__, "kind": kind,
                 "main_input": getattr(cls, "main_input_name", None), "vocab_size": cfg.get("vocab_size"),
                 "max_positions": max_positions(cfg), "image_size": cfg.get("image_size"),
                 "num_channels": cfg.get("num_channels"), "tokenizer": has_tokenizer(folder),
                 "torch_dtype": cfg.get("torch_dtype") or cfg.get("dtype")}
    if safes:
        info.param_count = sum(safetensors_param_count(folder / s) for s in safes)
    if kind != "other":
        info.inputs = hf_input_specs(cfg, kind)
    else:
        info.warnings.append("inputs cannot be generated for this kind of model: benchmark it with --inputs FILE.npz")
    return info


def _pt2_pickled_entries(path: Path) -> list[str]:
    """Entries of a ``.pt2`` that ``torch.export.load`` would unpickle (rules in the module doc).

    Raises:
        ModelError: not a ZIP / torch.export archive.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{path.name}: not a torch.export archive (.pt2 is a ZIP written by torch.export.save): {exc}") from None
    found: list[str] = []
    with zf:
        names = zf.namelist()
        if not any(n.endswith("/archive_format") or n == "archive_format" for n in names):
            found.append("(legacy torch.export archive without archive_format: its weights are a pickle)")
        for n in names:
            base = n.split("/", 1)[1] if "/" in n else n
            if base.startswith(("data/weights/", "data/constants/")) and base.endswith(".pt"):
                found.append(n)
            if base.startswith(("data/weights/", "data/constants/")) and base.endswith("_config.json"):
                try:
                    cfg = json.loads(zf.read(n))
                except (json.JSONDecodeError, UnicodeDecodeError, KeyError) as exc:
                    raise ModelError(f"{path.name}: entry {n} is not readable JSON ({exc})") from None
                for fqn, meta in (cfg.get("config") or {}).items():
                    pname = str(meta.get("path_name", ""))
                    if meta.get("use_pickle") or pname.startswith(("custom_obj_", "opaque_obj_")):
                        found.append(f"{n}: {fqn}")
            if base.startswith("data/sample_inputs/") and base.endswith(".pt"):
                if not _restricted_loadable(zf.read(n)):
                    found.append(f"{n} (refused by torch.load(weights_only=True))")
    return found


def _restricted_loadable(data: bytes) -> bool:
    import io

    torch = _torch()
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # noqa: BLE001 - the restricted unpickler raises UnpicklingError/RuntimeError/...
        return False
    return True


def load_pt2(path: Path, allow_pickle: bool) -> Any:
    """``torch.export.load(path)`` after :func:`check_pickle`.

    Raises:
        InputError: pickled entries without ``allow_pickle`` (names them and ``--allow-pickle``).
        ModelError: not a loadable program (quotes PyTorch's message).
    """
    torch = _torch()
    pickled = _pt2_pickled_entries(path)
    if pickled and not allow_pickle:
        raise InputError(_pickle_message(path.name, pickled))
    try:
        return torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - torch.export.load raises many types
        raise ModelError(f"{path.name}: torch.export.load failed: {type(exc).__name__}: {str(exc)[:1500]}") from None


def _pickle_message(what: str, pickled: Sequence[str]) -> str:
    shown = ", ".join(list(pickled)[:5]) + (f" and {len(pickled) - 5} more" if len(pickled) > 5 else "")
    return (f"{what}: refusing to unpickle {shown}: loading a pickle runs code chosen by whoever wrote the file. "
            "Convert the weights to safetensors (or re-export the .pt2 with plain tensors), or pass --allow-pickle "
            "if you trust the file (recorded in the run's config)")


def pt2_input_specs(ep: Any) -> tuple[list[InputSpec], dict[str, int], dict[str, tuple[int, int | None]]]:
    """Input specs of an ``ExportedProgram`` (naming rules in the module doc).

    Returns:
        ``(specs, default_dims, ranges)``: ``default_dims`` ``{dim name: size of the example input}``;
        ``ranges`` ``{dim name: (lower, upper or None)}`` from ``ep.range_constraints``.

    Raises:
        ModelError: a user input that is not a tensor (names it).
    """
    torch = _torch()
    user_inputs = list(ep.graph_signature.user_inputs)
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    examples: list[Any] = []
    if getattr(ep, "example_inputs", None):
        args, kwargs = ep.example_inputs
        examples = list(torch.utils._pytree.tree_leaves((args, kwargs)))
    names: dict[str, str] = {}
    defaults: dict[str, int] = {}
    ranges: dict[str, tuple[int, int | None]] = {}
    constraints = {str(k): v for k, v in ep.range_constraints.items()}
    specs = []
    for i, name in enumerate(user_inputs):
        val = nodes[name].meta.get("val") if name in nodes else None
        if not isinstance(val, torch.Tensor):
            raise ModelError(f"torch.export program: input {name!r} is not a tensor ({type(val).__name__}); "
                             "only tensor inputs can be benchmarked")
        dtype = str(val.dtype).replace("torch.", "")
        dims: list[int | str | None] = []
        for axis, d in enumerate(val.shape):
            if isinstance(d, int):
                dims.append(int(d))
                continue
            sym = str(d)
            if sym not in names:
                if axis == 0 and "batch" not in names.values():
                    names[sym] = "batch"
                elif axis == 1 and not val.dtype.is_floating_point and "sequence" not in names.values():
                    names[sym] = "sequence"
                else:
                    names[sym] = sym
            dn = names[sym]
            dims.append(dn)
            ex = examples[i] if i < len(examples) and isinstance(examples[i], torch.Tensor) else None
            if ex is not None and dn != "batch":
                defaults.setdefault(dn, int(ex.shape[axis]))
            vr = constraints.get(sym)
            if vr is not None:
                ranges[dn] = (_bound(vr.lower) or 0, _bound(vr.upper))
        specs.append(InputSpec(name, dtype, tuple(dims)))
    return specs, defaults, ranges


def _bound(v: Any) -> int | None:
    """A ``range_constraints`` bound as an int, ``None`` when unbounded: torch's ``int_oo`` (printed ``int_oo``,
    whose ``is_finite`` is not False and whose ``int()`` fails) or sympy's ``oo``."""
    if v is None or "oo" in str(v):
        return None
    return int(v)


def _inspect_pt2(path: Path, allow_pickle: bool) -> SourceInfo:
    pickled = _pt2_pickled_entries(path)
    info = SourceInfo(path=path, format=FORMAT_PT2, content_hash=sha256_file(path), size_bytes=path.stat().st_size,
                      weights=[path.name], pickle_files=pickled)
    torch = _torch()
    info.meta = {"torch_version_loaded_with": str(torch.__version__)}
    if pickled and not allow_pickle:
        info.warnings.append(_pickle_message(path.name, pickled))
        return info
    ep = load_pt2(path, allow_pickle)
    from collections import Counter

    info.op_histogram = dict(Counter(str(n.target) for n in ep.graph.nodes if n.op == "call_function"))
    info.param_count = int(sum(int(t.numel()) for t in ep.state_dict.values()))
    specs, defaults, ranges = pt2_input_specs(ep)
    info.inputs = specs
    info.meta.update({"default_dims": defaults, "dim_ranges": {k: list(v) for k, v in ranges.items()}})
    return info


def check_pickle(info: SourceInfo, allow_pickle: bool) -> None:
    """Refuse pickled weights unless ``allow_pickle``.

    Raises:
        InputError: names the pickle files and ``--allow-pickle``.
    """
    if info.pickle_files and not allow_pickle:
        raise InputError(_pickle_message(str(info.path.name), info.pickle_files))


def register_source(text: str, *, url: str | None = None) -> int:
    """Resolve MODEL (:func:`resolve_source`), inspect it and register it by reference
    (``db.store.add_reference_model``); returns the model id (an existing row for the same content at the
    same path).

    Raises:
        ModelError / EngineUnavailableError: as :func:`resolve_source` and :func:`inspect_source`.
    """
    from db.store import add_reference_model

    path, fmt, name = resolve_source(text)
    info = inspect_source(path, fmt)
    inputs = [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in info.inputs or []]
    row = add_reference_model(path, format=fmt, content_hash=info.content_hash, original_name=name,
                              size_bytes=info.size_bytes, inputs=inputs, param_count=info.param_count,
                              producer="transformers" if fmt == FORMAT_HF else "torch.export",
                              op_histogram=info.op_histogram,
                              preflight={"warnings": info.warnings, "nondefault_domains": [], "torch": info.meta,
                                         "weights": info.weights, "pickle_files": info.pickle_files}, url=url)
    return int(row.id)


# --------------------------------------------------------------------------------------------------
# Generated inputs of Hugging Face models


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def load_tokenizer(folder: Path) -> tuple[Any | None, str | None]:
    """``(AutoTokenizer, None)``, or ``(None, reason)`` when the folder has none or it cannot be loaded."""
    if not has_tokenizer(folder):
        return None, "no tokenizer files in the model folder"
    tf = _transformers()
    try:
        return tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True), None
    except Exception as exc:  # noqa: BLE001 - tokenizers raise many types for unusable files
        return None, f"tokenizer could not be loaded ({type(exc).__name__}: {str(exc)[:300]})"


def generate_hf_inputs(folder: Path, cfg: Mapping[str, Any], kind: str, specs: Sequence[InputSpec],
                       shapes: Mapping[str, Sequence[int]], seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inputs of one batch of a Hugging Face model (rules in the module doc).

    Returns:
        ``(feeds, description)``: feeds ``{name: C-contiguous array}`` with each spec's dtype and the
        resolved shape; description: JSON for ``runs.config["inputs"]``.

    Raises:
        ModelError: the tokenizer yields ids >= the config's ``vocab_size`` (names both).
        InputError: a dtype that cannot be generated.
    """
    if kind == "vision" or kind not in ("encoder", "decoder"):
        feeds = generate_inputs(specs, shapes, seed=seed)
        return feeds, {"source": "generated", "seed": seed, "rules": "engine_runner.inputs.generate_inputs (N(0,1))"}
    batch, seq = (int(d) for d in shapes["input_ids"])
    vocab = cfg.get("vocab_size")
    tok, why = load_tokenizer(folder)
    if tok is not None:
        ids, mask, layout = _tokenize(tok, kind, batch, seq, seed)
        if isinstance(vocab, int) and ids.size and int(ids.max()) >= vocab:
            raise ModelError(f"{folder.name}: the tokenizer produced id {int(ids.max())} but {HF_CONFIG} has "
                             f"vocab_size {vocab}; tokenizer and model do not match")
        desc = {"source": "tokenizer", "tokenizer": type(tok).__name__,
                "text": "engine_runner.minilm.SENTENCES (64 English sentences)", "layout": layout,
                "seed": seed, "real_tokens": int(mask.sum()), "positions": int(mask.size)}
    else:
        if not isinstance(vocab, int) or vocab < 1:
            raise ModelError(f"{folder.name}: no tokenizer and no vocab_size in {HF_CONFIG}: cannot make token ids; "
                             "pass --inputs FILE.npz")
        ids = _rng(seed, "input_ids").integers(0, vocab, size=(batch, seq), dtype=np.int64)
        mask = np.ones((batch, seq), np.int64)
        desc = {"source": "random ids", "why": why, "vocab_size": vocab, "seed": seed,
                "rules": "uniform in [0, vocab_size) from default_rng([seed, crc32('input_ids')]); mask all ones"}
    feeds = {"input_ids": np.ascontiguousarray(ids, np.int64), "attention_mask": np.ascontiguousarray(mask, np.int64)}
    return {s.name: feeds[s.name] for s in specs if s.name in feeds}, desc


def _tokenize(tok: Any, kind: str, batch: int, seq: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    from engine_runner.minilm import SENTENCES

    n = len(SENTENCES)
    if kind == "encoder" and (tok.pad_token is not None or tok.eos_token is not None):
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        rows = [SENTENCES[(seed + i) % n] for i in range(batch)]
        enc = tok(rows, padding="max_length", truncation=True, max_length=seq, return_attention_mask=True,
                  return_tensors="np")
        return np.asarray(enc["input_ids"], np.int64), np.asarray(enc["attention_mask"], np.int64), \
            "one sentence per row, padded/truncated to the sequence length"
    ids = np.zeros((batch, seq), np.int64)
    for i in range(batch):
        tokens: list[int] = []
        j = 0
        while len(tokens) < seq:
            piece = tok(SENTENCES[(seed + i + j) % n], add_special_tokens=(j == 0))["input_ids"]
            tokens.extend(int(t) for t in piece)
            j += 1
        ids[i] = tokens[:seq]
    return ids, np.ones((batch, seq), np.int64), "rows packed with consecutive sentences (every position a real token)"
