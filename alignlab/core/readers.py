"""Dataset readers: every supported format becomes a list of typed records (:mod:`alignlab.core.records`).

A source is a local file (``.jsonl``, ``.jsonl.gz``, ``.json``, ``.json.gz``, ``.csv``, ``.csv.gz``,
``.parquet``), a directory written by ``datasets`` ``save_to_disk`` or holding such files, or a Hugging Face
hub name (read with ``datasets.load_dataset(name, split=split)``). The format is detected from the first
row's columns (first match wins), or forced with ``format=``:

- ``pku_safe_rlhf`` (safety_pair): prompt, response_0, response_1, better_response_id, safer_response_id,
  is_response_0_safe, is_response_1_safe
- ``ultrafeedback_binarized`` (pair): prompt, chosen, rejected, score_chosen, score_rejected
- ``preference`` (pair): prompt, chosen, rejected, optional margin
- ``implicit_preference`` (pair): chosen, rejected as whole conversations (message lists), no prompt
- ``hh_rlhf`` (pair): chosen, rejected as ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` transcripts
- ``unpaired`` (unpaired): prompt, completion, label
- ``prompt_completion`` (conversation): prompt, completion
- ``ranked`` (ranked): prompt, responses, scores
- ``ranked_completions`` (ranked): prompt or instruction, completions ``[{response | text, score |
  overall_score}, ...]`` (raw UltraFeedback)
- ``messages`` (conversation): messages
- ``text`` (conversation, empty prompt): text
- ``prompt_only`` (prompt): prompt

Values follow TRL's two conventions: "standard" (prompt and answers are strings; a prompt string
becomes one user message, an empty prompt string no message) and "conversational" (message lists
``{"role": "system" | "user" | "assistant", "content": str}``; an answer list must end with the
assistant message, and any messages before it must repeat the prompt). CSV cells are text, so CSV
numbers, booleans and JSON arrays/objects (message lists, score lists) are decoded from their text.

Rules that decide what is an error (:class:`~alignlab.errors.DataError` naming source, row and field;
rows are 0-based data rows, and JSONL/CSV messages also give the file's line):

- a missing or null field, a wrong type, an empty completion, a bad message role, non-finite scores, a
  ranked list with fewer than 2 responses, invalid JSON, an unknown format, a missing file;
- for kinds ``pair`` and ``unpaired``, chosen identical to rejected: a pair must express a preference
  between two different texts (and identical texts labelled both good and bad contradict each other).

HH-RLHF transcripts are split at ``\\n\\nHuman:`` / ``\\n\\nAssistant:`` markers (a "Human:" inside a
turn without the blank line is text the assistant wrote, and stays); each turn is stripped of surrounding
whitespace, and consecutive turns by the same speaker are merged with a blank line (9 of the 2,312 rows of
harmless-base test have such doubled Assistant turns; merged, every pair shares its prompt). The shared
prompt is every turn before the final Assistant turn. Two quirks of the published data are dropped, not
raised, with one warning giving counts and row numbers: an empty final Assistant turn (4 rows of
harmless-base test, all in chosen) and transcripts that differ before the final turn (none there once
doubled turns are merged). So that file reads as 2,308 pairs.

Conversions asked for with ``kind``: anything → prompt; pair → conversation (chosen); safety_pair → pair
(better vs other); ranked → pair (best vs worst, margin = score gap; all scores tied is an error);
pair/safety_pair/ranked → unpaired (two records per row: the pair's chosen ``label=True``, its rejected
``label=False`` with the chosen answer in ``meta["chosen"]``, so a loss may tell where the two part).
Example::

    >>> pairs = read_records("hh_harmless_base_test.jsonl.gz", "pair")            # doctest: +SKIP
    >>> sft = read_records("ultrafeedback.parquet", "conversation", limit=1000)   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import os
import re
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from alignlab.core.records import (
    ConversationRecord,
    Message,
    PairRecord,
    PromptRecord,
    RankedRecord,
    Record,
    RecordKind,
    SafetyPairRecord,
    UnpairedRecord,
    user,
)
from alignlab.errors import DataError

ROLES = ("system", "user", "assistant")
FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".csv", ".csv.gz", ".parquet")
_FROM_ROW = object()  # sentinel: "read the value from the row", as opposed to a value passed in


class _Drop(Exception):
    """Raised by the HH-RLHF reader for a documented quirk of the published data: skip the row, count it."""


# --------------------------------------------------------------------------------------------------
# One row, with the context every error message needs
# --------------------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"


class RowView:
    """One data row plus where it came from; its typed getters raise a DataError naming source/row/field.

    ``line`` is the 1-based line of the file where the row starts (JSONL, CSV), else None; ``text_cells``
    says every cell is text (CSV), so numbers and booleans are decoded from their spelling.

    Example::

        >>> RowView({"prompt": "Hi"}, source="x.jsonl", row=0).prompt()
        [{'role': 'user', 'content': 'Hi'}]
    """

    def __init__(self, data: dict[str, Any], *, source: str, row: int, line: int | None = None,
                 text_cells: bool = False):
        self.data, self.source, self.row, self.line, self.text_cells = data, source, row, line, text_cells

    def error(self, message: str, field: str | None = None) -> DataError:
        where = f"row {self.row} is line {self.line} of the file" if self.line is not None else None
        note = f"row numbers are 0-based; {where}" if where else "row numbers are 0-based"
        return DataError(f"{message} ({note})", source=self.source, row=self.row, field=field)

    def has(self, field: str) -> bool:
        return self.data.get(field) is not None

    def value(self, field: str, value: Any = _FROM_ROW) -> Any:
        """The field's value (or ``value`` when given, for nested fields); missing or null is an error."""
        if value is _FROM_ROW:
            if field not in self.data:
                raise self.error(f"missing field; the row has {sorted(self.data)}", field)
            value = self.data[field]
        if value is None:
            raise self.error("missing value (null)", field)
        return value

    def text(self, field: str, value: Any = _FROM_ROW) -> str:
        """A non-empty string (surrounding whitespace is kept: it can matter to a tokenizer)."""
        value = self.value(field, value)
        if not isinstance(value, str):
            raise self.error(f"expected a string, got {_describe(value)}", field)
        if not value.strip():
            raise self.error("empty text", field)
        return value

    def number(self, field: str, value: Any = _FROM_ROW) -> float:
        """A finite float; from CSV text as well."""
        value = self.value(field, value)
        if isinstance(value, str) and self.text_cells:
            try:
                value = float(value)
            except ValueError:
                raise self.error(f"expected a number, got {_describe(value)}", field) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"expected a number, got {_describe(value)}", field)
        if not math.isfinite(value):
            raise self.error(f"expected a finite number, got {value}", field)
        return float(value)

    def flag(self, field: str) -> bool:
        """A boolean: true/false, or 1/0; from CSV text also 'True'/'False'/'1'/'0'."""
        value = self.value(field)
        if isinstance(value, str) and self.text_cells:
            value = {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower(), value)
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self.error(f"expected a boolean, got {_describe(value)}", field)

    def index01(self, field: str) -> int:
        """0 or 1: which of two responses (from CSV text as well)."""
        value = self.value(field)
        if isinstance(value, str) and self.text_cells and value.strip() in ("0", "1"):
            value = int(value)
        if isinstance(value, bool) or value not in (0, 1):
            raise self.error(f"expected 0 or 1, got {_describe(value)}", field)
        return int(value)

    def messages(self, field: str, value: Any = _FROM_ROW) -> list[Message]:
        """A list of ``{"role", "content"}`` messages with a known role and string content."""
        value = self.value(field, value)
        if not isinstance(value, list):
            raise self.error(f"expected a list of messages, got {_describe(value)}", field)
        messages = []
        for j, message in enumerate(value):
            if not isinstance(message, dict):
                raise self.error(f"message {j} is {_describe(message)}, expected a role/content object", field)
            role, content = message.get("role"), message.get("content")
            if role not in ROLES:
                raise self.error(f"message {j} has role {role!r}; expected one of {', '.join(ROLES)}", field)
            if not isinstance(content, str):
                raise self.error(f"message {j} ({role}) content must be a string, got {_describe(content)}",
                                 field)
            messages.append({"role": role, "content": content})
        return messages

    def prompt(self, field: str = "prompt", value: Any = _FROM_ROW) -> list[Message]:
        """A prompt as messages: a string becomes one user message (an empty string, no message)."""
        value = self.value(field, value)
        if isinstance(value, str):
            return [user(value)] if value.strip() else []
        if isinstance(value, list):
            return self.messages(field, value)
        raise self.error(f"expected a string or a list of messages, got {_describe(value)}", field)

    def answer(self, field: str, value: Any = _FROM_ROW, *, text_ok: bool = True) -> tuple[list[Message], str]:
        """``(messages before the final assistant message, its text)``; a plain string has no context."""
        value = self.value(field, value)
        if isinstance(value, str) and text_ok:
            return [], self.text(field, value)
        if not isinstance(value, list):
            wanted = "a string or a list of messages" if text_ok else "a list of messages"
            raise self.error(f"expected {wanted}, got {_describe(value)}", field)
        messages = self.messages(field, value)
        if not messages or messages[-1]["role"] != "assistant":
            raise self.error("the message list must end with an assistant message (the completion)", field)
        if not messages[-1]["content"].strip():
            raise self.error("the final assistant message (the completion) is empty", field)
        return messages[:-1], messages[-1]["content"]

    def answer_to(self, prompt: list[Message], field: str, value: Any = _FROM_ROW) -> str:
        """The completion in ``field``; if it is a full conversation, what precedes the answer must be ``prompt``."""
        context, text = self.answer(field, value)
        if context and context != prompt:
            raise self.error("the messages before the final assistant message differ from the prompt", field)
        return text


# --------------------------------------------------------------------------------------------------
# One small reader per format: a row in, a record out
# --------------------------------------------------------------------------------------------------

_HH_MARKER = re.compile(r"\n\n(Human|Assistant):")


def _hh_transcript(row: RowView, field: str) -> list[Message]:
    transcript = row.value(field)
    if not isinstance(transcript, str):
        raise row.error(f"expected an HH-RLHF transcript string, got {_describe(transcript)}", field)
    pieces = _HH_MARKER.split(transcript)  # ["", "Human", " text", "Assistant", " text", ...]
    if pieces[0].strip():
        raise row.error("text before the first '\\n\\nHuman:' marker; expected a transcript of turns", field)
    messages: list[Message] = []
    for speaker, text in zip(pieces[1::2], pieces[2::2]):
        role, text = ("user" if speaker == "Human" else "assistant"), text.strip()
        if messages and messages[-1]["role"] == role:  # a doubled turn is one turn split by a stray marker
            messages[-1]["content"] = "\n\n".join(part for part in (messages[-1]["content"], text) if part)
        else:
            messages.append({"role": role, "content": text})
    if not any(message["role"] == "assistant" for message in messages):
        raise row.error("transcript has no '\\n\\nAssistant:' turn", field)
    if messages[-1]["role"] != "assistant":
        raise row.error("transcript ends with a Human turn; the last turn must be the Assistant's answer", field)
    return messages


def read_hh_rlhf(row: RowView) -> PairRecord:
    """Anthropic HH-RLHF: ``{"chosen": "\\n\\nHuman: q\\n\\nAssistant: a", "rejected": ...}``.

    The shared prompt is the turns before the final Assistant turn; chosen/rejected are the final turns.
    Rows with an empty final turn, or whose transcripts differ before it, are dropped (see module docs).
    """
    chosen, rejected = _hh_transcript(row, "chosen"), _hh_transcript(row, "rejected")
    for field, messages in (("chosen", chosen), ("rejected", rejected)):
        if not messages[-1]["content"]:
            raise _Drop(f"the final Assistant turn of '{field}' is empty")
    if chosen[:-1] != rejected[:-1]:
        raise _Drop("chosen and rejected differ before the final Assistant turn")
    return PairRecord(prompt=chosen[:-1], chosen=chosen[-1]["content"], rejected=rejected[-1]["content"])


def read_preference(row: RowView) -> PairRecord:
    """TRL preference: ``{"prompt", "chosen", "rejected"}``, standard or conversational; optional ``margin``."""
    prompt = row.prompt()
    margin = row.number("margin") if row.has("margin") else None
    return PairRecord(prompt=prompt, chosen=row.answer_to(prompt, "chosen"),
                      rejected=row.answer_to(prompt, "rejected"), margin=margin)


def read_ultrafeedback_binarized(row: RowView) -> PairRecord:
    """UltraFeedback-binarized: a preference row plus ``score_chosen``/``score_rejected``; margin = the gap."""
    pair = read_preference(row)
    pair.margin = row.number("score_chosen") - row.number("score_rejected")
    return pair


def read_implicit_preference(row: RowView) -> PairRecord:
    """TRL conversational with an implicit prompt: chosen/rejected are whole conversations.

    The prompt is their common messages before the final assistant message; they must differ only there.
    """
    chosen_context, chosen = row.answer("chosen", text_ok=False)
    rejected_context, rejected = row.answer("rejected", text_ok=False)
    if chosen_context != rejected_context:
        raise row.error("chosen and rejected differ before their final assistant message, so they share no "
                        "prompt", "rejected")
    return PairRecord(prompt=chosen_context, chosen=chosen, rejected=rejected)


def read_unpaired(row: RowView) -> UnpairedRecord:
    """TRL unpaired preference (KTO): ``{"prompt", "completion", "label"}`` with a boolean label."""
    prompt = row.prompt()
    return UnpairedRecord(prompt=prompt, completion=row.answer_to(prompt, "completion"), label=row.flag("label"))


def read_prompt_completion(row: RowView) -> ConversationRecord:
    """TRL prompt-completion: ``{"prompt", "completion"}``, standard or conversational."""
    prompt = row.prompt()
    return ConversationRecord(prompt=prompt, completion=row.answer_to(prompt, "completion"))


def read_messages(row: RowView) -> ConversationRecord:
    """TRL conversational language modelling: ``{"messages": [...]}`` ending with the assistant's answer."""
    prompt, completion = row.answer("messages", text_ok=False)
    return ConversationRecord(prompt=prompt, completion=completion)


def read_text(row: RowView) -> ConversationRecord:
    """TRL standard language modelling: ``{"text"}``, a completion with an empty prompt."""
    return ConversationRecord(prompt=[], completion=row.text("text"))


def read_prompt_only(row: RowView) -> PromptRecord:
    """TRL prompt-only: ``{"prompt"}`` (a string or messages), which must not be empty."""
    prompt = row.prompt()
    if not prompt:
        raise row.error("empty prompt", "prompt")
    return PromptRecord(prompt=prompt)


def _ranked(row: RowView, prompt: list[Message], responses: list[str], scores: list[float]) -> RankedRecord:
    if len(responses) < 2:
        raise row.error(f"a ranked list needs at least 2 responses, got {len(responses)}", "responses")
    return RankedRecord(prompt=prompt, responses=responses, scores=scores)


def read_ranked(row: RowView) -> RankedRecord:
    """Ranked list: ``{"prompt", "responses": [str, ...], "scores": [float, ...]}`` (higher is better)."""
    prompt, responses, scores = row.prompt(), row.value("responses"), row.value("scores")
    for field, values in (("responses", responses), ("scores", scores)):
        if not isinstance(values, list):
            raise row.error(f"expected a list, got {_describe(values)}", field)
    if len(responses) != len(scores):
        raise row.error(f"{len(responses)} responses but {len(scores)} scores", "scores")
    return _ranked(row, prompt, [row.answer_to(prompt, f"responses[{j}]", r) for j, r in enumerate(responses)],
                   [row.number(f"scores[{j}]", s) for j, s in enumerate(scores)])


def read_ranked_completions(row: RowView) -> RankedRecord:
    """Raw UltraFeedback style: ``{"prompt" | "instruction", "completions": [{"response", "overall_score"}]}``.

    Each completion's text is ``response`` (or ``text``), its score ``score`` (or ``overall_score``).
    """
    prompt = row.prompt("instruction" if "prompt" not in row.data and "instruction" in row.data else "prompt")
    completions = row.value("completions")
    if not isinstance(completions, list):
        raise row.error(f"expected a list of completions, got {_describe(completions)}", "completions")
    responses, scores = [], []
    for j, item in enumerate(completions):
        if not isinstance(item, dict):
            raise row.error(f"expected an object, got {_describe(item)}", f"completions[{j}]")
        text_key = "response" if "response" in item else "text"
        score_key = "score" if "score" in item else "overall_score"
        responses.append(row.answer_to(prompt, f"completions[{j}].{text_key}", item.get(text_key)))
        scores.append(row.number(f"completions[{j}].{score_key}", item.get(score_key)))
    return _ranked(row, prompt, responses, scores)


def read_pku_safe_rlhf(row: RowView) -> SafetyPairRecord:
    """PKU-SafeRLHF: two responses with separate helpfulness (better) and harmlessness (safer) labels."""
    prompt = row.prompt()
    return SafetyPairRecord(
        prompt=prompt,
        responses=(row.answer_to(prompt, "response_0"), row.answer_to(prompt, "response_1")),
        better=row.index01("better_response_id"),
        safer=row.index01("safer_response_id"),
        is_safe=(row.flag("is_response_0_safe"), row.flag("is_response_1_safe")),
    )


@dataclass(frozen=True)
class Format:
    """A dataset format: the columns that identify it, the record kind it yields, and its row reader."""

    name: str
    columns: frozenset[str]
    kind: RecordKind
    read: Callable[[RowView], Record]
    matches: Callable[[dict[str, Any]], bool] = lambda first_row: True


# Detection order: the first format whose columns the first row has (and whose check passes) wins, so the
# more specific formats come first.
FORMATS: tuple[Format, ...] = (
    Format("pku_safe_rlhf", frozenset({"prompt", "response_0", "response_1", "better_response_id",
                                       "safer_response_id"}), "safety_pair", read_pku_safe_rlhf),
    Format("ultrafeedback_binarized", frozenset({"prompt", "chosen", "rejected", "score_chosen",
                                                 "score_rejected"}), "pair", read_ultrafeedback_binarized),
    Format("preference", frozenset({"prompt", "chosen", "rejected"}), "pair", read_preference),
    Format("implicit_preference", frozenset({"chosen", "rejected"}), "pair", read_implicit_preference,
           matches=lambda first_row: isinstance(first_row["chosen"], list)),
    Format("hh_rlhf", frozenset({"chosen", "rejected"}), "pair", read_hh_rlhf),
    Format("unpaired", frozenset({"prompt", "completion", "label"}), "unpaired", read_unpaired),
    Format("prompt_completion", frozenset({"prompt", "completion"}), "conversation", read_prompt_completion),
    Format("ranked", frozenset({"prompt", "responses", "scores"}), "ranked", read_ranked),
    Format("ranked_completions", frozenset({"completions"}), "ranked", read_ranked_completions),
    Format("messages", frozenset({"messages"}), "conversation", read_messages),
    Format("text", frozenset({"text"}), "conversation", read_text),
    Format("prompt_only", frozenset({"prompt"}), "prompt", read_prompt_only),
)
_FORMATS_BY_NAME = {fmt.name: fmt for fmt in FORMATS}


def _format_list() -> str:
    return "; ".join(f"{fmt.name} ({', '.join(sorted(fmt.columns))})" for fmt in FORMATS)


def detect_format(first_row: dict[str, Any], source: str = "<rows>") -> Format:
    """The format of a dataset from its first row's columns; DataError listing the columns and formats if none."""
    for fmt in FORMATS:
        if fmt.columns <= first_row.keys() and fmt.matches(first_row):
            return fmt
    raise DataError(f"cannot tell the format from the columns {sorted(first_row)}; supported formats are: "
                    f"{_format_list()}", source=source)


# --------------------------------------------------------------------------------------------------
# Conversions between record kinds
# --------------------------------------------------------------------------------------------------

_REACHABLE: dict[str, set[str]] = {  # native kind -> kinds it can be converted to
    "prompt": {"prompt"},
    "conversation": {"conversation", "prompt"},
    "unpaired": {"unpaired", "prompt"},
    "pair": {"pair", "conversation", "unpaired", "prompt"},
    "safety_pair": {"safety_pair", "pair", "conversation", "unpaired", "prompt"},
    "ranked": {"ranked", "pair", "conversation", "unpaired", "prompt"},
}
_REJECTED_FIELD = {"pair": "rejected", "safety_pair": "response_1", "ranked": "responses"}


def _to_pair(record: PairRecord | SafetyPairRecord | RankedRecord, row: RowView) -> PairRecord:
    if isinstance(record, PairRecord):
        return record
    if isinstance(record, SafetyPairRecord):  # helpfulness preference; safety is dropped
        return PairRecord(prompt=record.prompt, chosen=record.responses[record.better],
                          rejected=record.responses[1 - record.better], meta=dict(record.meta))
    best = max(range(len(record.scores)), key=record.scores.__getitem__)
    worst = min(range(len(record.scores)), key=record.scores.__getitem__)
    if record.scores[best] == record.scores[worst]:
        raise row.error("all scores are tied, so there is no best-vs-worst pair", "scores")
    return PairRecord(prompt=record.prompt, chosen=record.responses[best], rejected=record.responses[worst],
                      margin=record.scores[best] - record.scores[worst], meta=dict(record.meta))


def _convert(record: Record, kind: RecordKind, row: RowView) -> list[Record]:
    if kind == record.kind and kind != "pair":  # a native pair still gets the identity check below
        return [record]
    if kind == "prompt":
        return [PromptRecord(prompt=record.prompt, meta=record.meta)]
    pair = _to_pair(record, row)  # only pair, safety_pair and ranked reach here (see _REACHABLE)
    if kind == "conversation":
        return [ConversationRecord(prompt=pair.prompt, completion=pair.chosen, meta=pair.meta)]
    if pair.chosen == pair.rejected:
        raise row.error(f"chosen and rejected are the same text; kind '{kind}' needs two different responses",
                        _REJECTED_FIELD[record.kind])
    if kind == "pair":
        return [pair]
    return [UnpairedRecord(prompt=pair.prompt, completion=pair.chosen, label=True, meta=pair.meta),
            UnpairedRecord(prompt=pair.prompt, completion=pair.rejected, label=False,
                           meta={**pair.meta, "chosen": pair.chosen})]


# --------------------------------------------------------------------------------------------------
# Sources: files, directories, hub names -> (source name, rows)
# --------------------------------------------------------------------------------------------------

# Each table yields (row dict, line in the file or None).
_Rows = Iterator[tuple[Any, int | None]]


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a text file, gzip-compressed or not.

    Bytes that are not UTF-8 and a gzip stream that is cut short or not gzip at all are a DataError naming
    the file and line, not a decoder's traceback.
    """
    gz = path.name.lower().endswith(".gz")
    line_number = 0
    try:
        with (gzip.open(path, "rb") if gz else path.open("rb")) as f:
            for line_number, raw in enumerate(f, start=1):
                try:
                    yield line_number, raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"line {line_number} is not UTF-8 text (byte {raw[e.start]:#04x} at column "
                                    f"{e.start + 1}); save the file as UTF-8", source=str(path)) from None
    except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        where = f"after line {line_number}" if line_number else "at its start"
        what = "gzip file is truncated or corrupt" if gz else "file cannot be read"
        raise DataError(f"the {what} ({where}): {e}", source=str(path)) from None


def _jsonl_rows(path: Path) -> _Rows:
    row = 0
    for line_number, line in _lines(path):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON at column {e.colno}: {e.msg} (row numbers are 0-based; row {row} "
                            f"is line {line_number} of the file)", source=str(path), row=row) from None
        yield data, line_number
        row += 1


def _json_rows(path: Path) -> _Rows:
    text = "".join(line for _, line in _lines(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if not text.lstrip().startswith("["):  # many ".json" datasets are JSON Lines in disguise
            yield from _jsonl_rows(path)
            return
        raise DataError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", source=str(path)) from None
    if not isinstance(data, list):
        raise DataError(f"expected a JSON array of row objects, got {type(data).__name__}", source=str(path))
    yield from ((item, None) for item in data)


def _csv_cell(cell: str) -> Any:
    # CSV holds text only: message and score lists are stored as JSON, so decode what parses as an array/object.
    if cell.lstrip().startswith(("[", "{")):
        try:
            return json.loads(cell)
        except json.JSONDecodeError:
            pass
    return cell


def _csv_rows(path: Path) -> _Rows:
    reader = csv.DictReader(line for _, line in _lines(path))
    reader.fieldnames  # noqa: B018 - reads the header now, so line_num counts it
    start = reader.line_num
    for record in reader:
        # DictReader fills cells missing from a short line with None: treat those as missing fields.
        yield {key: _csv_cell(cell) for key, cell in record.items() if key is not None and cell is not None}, \
            start + 1
        start = reader.line_num


def _parquet_rows(path: Path) -> _Rows:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise DataError(f"cannot read Parquet: {e}", source=str(path)) from None
    yield from ((item, None) for item in table.to_pylist())


def _file_rows(path: Path) -> _Rows:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return _jsonl_rows(path)
    if name.endswith((".json", ".json.gz")):
        return _json_rows(path)
    if name.endswith((".csv", ".csv.gz")):
        return _csv_rows(path)
    if name.endswith(".parquet"):
        return _parquet_rows(path)
    raise DataError(f"unsupported file type; supported: {', '.join(FILE_SUFFIXES)}", source=str(path))


def _dataset_rows(dataset: Iterable[dict[str, Any]]) -> _Rows:
    return ((item, None) for item in dataset)


def _saved_dataset_rows(path: Path, split: str) -> _Rows:
    import datasets

    try:
        saved = datasets.load_from_disk(str(path))
    except Exception as e:  # a damaged or version-mismatched save: one line, not the library's stack
        raise DataError(f"cannot load the saved dataset: {type(e).__name__}: {e}", source=str(path)) from None
    if isinstance(saved, datasets.DatasetDict):
        if split not in saved:
            raise DataError(f"no split '{split}'; the saved dataset has {sorted(saved)}", source=str(path))
        saved = saved[split]
    return _dataset_rows(saved)


_SPLIT_NAMES = {"train", "test", "validation", "valid", "dev", "eval"}


def _split_files(directory: Path, split: str) -> list[Path]:
    """Data files of ``split`` in a directory, following the hub's convention.

    A file belongs to a split when the split's name is a word of its relative path (``train.jsonl``,
    ``data/test-00000-of-00001.parquet``); if no file names any split, all files are the train split.
    """
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name.lower().endswith(FILE_SUFFIXES))
    words = {p: set(re.split(r"[^a-z0-9]+", str(p.relative_to(directory)).lower())) for p in files}
    chosen = [p for p in files if split.lower() in words[p]]
    if not chosen and split == "train" and not any(words[p] & _SPLIT_NAMES for p in files):
        chosen = files
    if not chosen:
        found = ", ".join(str(p.relative_to(directory)) for p in files) or "no data files"
        raise DataError(f"no data files for split '{split}' (found: {found}; supported: "
                        f"{', '.join(FILE_SUFFIXES)})", source=str(directory))
    return chosen


def _tables(source: str | Path, split: str) -> Iterator[tuple[str, _Rows, bool]]:
    """``(source name for messages, rows, cells are text)`` for every table the source holds."""
    path = Path(source).expanduser()
    if path.is_file():
        yield str(path), _file_rows(path), path.name.lower().endswith((".csv", ".csv.gz"))
    elif path.is_dir():
        if any((path / marker).exists() for marker in ("dataset_dict.json", "dataset_info.json", "state.json")):
            yield str(path), _saved_dataset_rows(path, split), False
        else:
            for file in _split_files(path, split):
                yield str(file), _file_rows(file), file.name.lower().endswith((".csv", ".csv.gz"))
    elif (str(source).lower().endswith(FILE_SUFFIXES) or path.is_absolute()
          or str(source).startswith((".", "~")) or str(source).endswith(("/", os.sep))):
        raise DataError("file or directory does not exist", source=str(source))
    else:
        yield str(source), _hub_rows(str(source), split), False


def _hub_rows(name: str, split: str) -> _Rows:
    import datasets

    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as e:  # offline, unknown name, bad split: show one line, not the library's stack
        raise DataError(f"cannot load hub dataset '{name}' split '{split}': {type(e).__name__}: {e}",
                        source=name) from None
    return _dataset_rows(dataset)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def read_records(source: str | Path, kind: RecordKind | None = None, *, split: str = "train",
                 format: str | None = None, limit: int | None = None) -> list[Record]:
    """Read a dataset into typed records, converted to ``kind`` if given (see the module docs).

    ``source`` is a local file, a directory (``save_to_disk`` output or data files, of which those of
    ``split`` are read), or a hub name for ``datasets.load_dataset(source, split=split)``. ``format``
    forces a format by name instead of detecting it; ``limit`` caps the number of records (reading stops
    there). Every record's ``meta["row"]`` is its 0-based row in the table it came from.

    Example::

        >>> pairs = read_records("hh_harmless_base_test.jsonl.gz", "pair")  # doctest: +SKIP
        >>> pairs[0].prompt[0]                                                                  # doctest: +SKIP
        {'role': 'user', 'content': 'what are some pranks with a pen i can do?'}
    """
    if kind is not None and kind not in get_args(RecordKind):
        raise DataError(f"unknown record kind '{kind}'; kinds are {', '.join(get_args(RecordKind))}",
                        source=str(source))
    if format is not None and format not in _FORMATS_BY_NAME:
        raise DataError(f"unknown format '{format}'; supported formats are: {_format_list()}", source=str(source))
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of records, got {limit}", source=str(source))

    records: list[Record] = []
    fmt = _FORMATS_BY_NAME[format] if format is not None else None
    dropped: dict[str, list[int]] = {}  # reason -> rows
    rows_read = 0
    for name, rows, text_cells in _tables(source, split):
        for i, (data, line) in enumerate(rows):
            row = RowView(data if isinstance(data, dict) else {}, source=name, row=i, line=line,
                          text_cells=text_cells)
            if not isinstance(data, dict):
                raise row.error(f"expected a row object, got {_describe(data)}")
            if fmt is None:
                fmt = detect_format(data, name)
            if rows_read == 0 and kind is not None and kind not in _REACHABLE[fmt.kind]:
                raise DataError(f"format '{fmt.name}' holds {fmt.kind} records, which cannot be converted to "
                                f"kind '{kind}' (possible: {', '.join(sorted(_REACHABLE[fmt.kind]))})",
                                source=name)
            rows_read += 1
            try:
                record = fmt.read(row)
            except _Drop as reason:
                dropped.setdefault(str(reason), []).append(i)
                continue
            if isinstance(data.get("meta"), dict):  # written by write_jsonl
                record.meta.update(data["meta"])
            record.meta["row"] = i
            records.extend(_convert(record, kind or fmt.kind, row))
            if limit is not None and len(records) >= limit:
                break
        if limit is not None and len(records) >= limit:
            break
    if rows_read == 0:
        raise DataError("the dataset has no rows", source=str(source))
    for reason, where in dropped.items():
        shown = ", ".join(map(str, where[:10])) + (", ..." if len(where) > 10 else "")
        warnings.warn(f"{source}: dropped {len(where)} of {rows_read} {fmt.name} rows because {reason} "
                      f"(0-based rows {shown})", stacklevel=2)
    return records[:limit] if limit is not None else records


def _record_row(record: Record) -> dict[str, Any]:
    """A record as one row of TRL's conversational format (ranked lists and safety pairs in their own)."""
    match record:
        case PromptRecord():
            row: dict[str, Any] = {"prompt": record.prompt}
        case ConversationRecord():
            row = {"prompt": record.prompt, "completion": [{"role": "assistant", "content": record.completion}]}
        case PairRecord():
            row = {"prompt": record.prompt, "chosen": [{"role": "assistant", "content": record.chosen}],
                   "rejected": [{"role": "assistant", "content": record.rejected}]}
            if record.margin is not None:
                row["margin"] = record.margin
        case UnpairedRecord():
            row = {"prompt": record.prompt, "completion": [{"role": "assistant", "content": record.completion}],
                   "label": record.label}
        case RankedRecord():
            row = {"prompt": record.prompt, "responses": list(record.responses), "scores": list(record.scores)}
        case SafetyPairRecord():
            row = {"prompt": record.prompt, "response_0": record.responses[0], "response_1": record.responses[1],
                   "better_response_id": record.better, "safer_response_id": record.safer,
                   "is_response_0_safe": record.is_safe[0], "is_response_1_safe": record.is_safe[1]}
        case _:
            raise DataError(f"not a record: {_describe(record)}")
    return row


def write_jsonl(records: Iterable[Record], path: str | Path) -> Path:
    """Write records as JSON Lines in TRL's conversational format, atomically (temp file, then rename).

    All records must be of one kind, so the file reads back as one format; a non-empty ``meta`` is kept
    in a ``meta`` column (it must be JSON-serialisable). A ``.gz`` suffix writes gzip.

    Example::

        >>> write_jsonl([PairRecord([user("Hi")], "Hello!", "Go away.")], "pairs.jsonl")  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    temp = Path(temp_name)
    kinds: set[str] = set()
    try:
        with (gzip.open(temp, "wt", encoding="utf-8") if path.name.endswith(".gz")
              else temp.open("w", encoding="utf-8")) as f:
            for i, record in enumerate(records):
                kinds.add(record.kind)
                if len(kinds) > 1:
                    raise DataError(f"records of several kinds ({', '.join(sorted(kinds))}); write one kind per "
                                    "file", source=str(path), row=i)
                row = _record_row(record)
                if record.meta:
                    row["meta"] = record.meta
                try:
                    f.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
                except (TypeError, ValueError) as e:
                    raise DataError(f"cannot write as JSON: {e}", source=str(path), row=i) from None
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o644)  # mkstemp creates 0600; a dataset file is meant to be shared
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def records_fingerprint(records: Iterable[Record]) -> str:
    """A stable sha256 hex digest of the records' content, in order (``meta`` is not content).

    Equal records in equal order give equal fingerprints across processes and machines, so it can key a
    cache of reference log-probs.

    Example::

        >>> records_fingerprint([PromptRecord([user("Hi")])])[:12]  # doctest: +SKIP
    """
    digest = hashlib.sha256(b"alignlab-records-v1\n")
    for record in records:
        content = {"kind": record.kind, **_record_row(record)}
        digest.update(json.dumps(content, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
