"""Rows of a generative task: read in any of three formats, checked, and rendered as training text.

Formats (`data.format`):
- `fields`: a prompt column and a response column (`data.text_field`, `data.label_field`), rendered
  as a user turn and an assistant turn with the model's chat template (`data.instruction` before the
  prompt and `data.system` before both, when set);
- `messages`: a column (`data.messages_field`) holding a chat, a list of `{"role", "content"}` turns
  (system, user, assistant); the loss is on every assistant turn and nothing else;
- `text_template`: `data.prompt_template` and `data.completion_template` with `{column}` placeholders,
  Olive's `text_template` cut where the answer starts; no chat template, EOS after the completion.

Every row becomes segments, `[text, trained]` pairs whose texts joined are the training text, plus
the prompt that generation starts from and the reference response (the last assistant turn).
Every refusal is a DataError naming file:line (or the key) and what to do.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmtune.config import DataConfig
from slmtune.data import FIELD_HINT, json_type, normalise, read_records, string_field
from slmtune.errors import DataError
from slmtune.prompts import user_message
from slmtune.tokenization import common_prefix_length

ROLES = ("system", "user", "assistant")
Segment = tuple[str, bool]  # a piece of the training text, and whether the loss is on it


@dataclass(frozen=True)
class TextRow:
    """One row of a generative task: a chat (messages) or a template's prompt and completion."""

    line: int
    messages: tuple[tuple[str, str], ...] = ()  # (role, content) turns, for the chat formats
    prompt: str = ""  # text_template only
    completion: str = ""  # text_template only

    @property
    def key(self) -> str:
        """What two rows must not share across splits (the request, folded): leakage otherwise."""
        if not self.messages:
            return normalise(self.prompt)
        return normalise("\n".join(content for role, content in self.messages if role != "assistant"))


def template_columns(template: str) -> list[str]:
    """The `{column}` names a template reads (literal braces are written `{{` and `}}`)."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise DataError(f"data template {template!r}: {err}; write literal braces as {{{{ and }}}}") from None
    if any(not name.isidentifier() for name in names):
        raise DataError(f"data template {template!r}: placeholders must be column names such as {{question}}")
    return names


def load_text_rows(path: Path, data: DataConfig) -> list[TextRow]:
    """Every row of `path` read in `data.format`, checked; duplicates (folded request) refused."""
    fields = _required_columns(data)
    rows: list[TextRow] = []
    first_seen: dict[str, int] = {}
    for line, record in read_records(path, fields):
        where = f"{path}:{line}"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected an object with {', '.join(map(repr, fields))}, got {json_type(record)}")
        row = _read_row(record, line, where, data)
        if row.key in first_seen:
            raise DataError(
                f"{where}: duplicate request (same as line {first_seen[row.key]}, case and whitespace folded); "
                "a duplicate could land in two splits: remove one of them"
            )
        first_seen[row.key] = line
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no records (the file is empty or holds only blank lines)")
    return rows


def _required_columns(data: DataConfig) -> tuple[str, ...]:
    if data.format == "fields":
        return (data.text_field, data.label_field)
    if data.format == "messages":
        return (data.messages_field,)
    columns = template_columns(str(data.prompt_template)) + template_columns(str(data.completion_template))
    if not template_columns(str(data.completion_template)):
        raise DataError(
            f"data.completion_template {data.completion_template!r} names no column; the completion must come "
            "from the row, e.g. '{answer}'"
        )
    return tuple(dict.fromkeys(columns))


def _read_row(record: dict[str, Any], line: int, where: str, data: DataConfig) -> TextRow:
    if data.format == "fields":
        prompt = _text(record, data.text_field, where, "the prompt")
        response = _text(record, data.label_field, where, "the response")
        user = user_message(data.instruction, prompt) if data.instruction else prompt
        turns = ((("system", data.system),) if data.system else ()) + (("user", user), ("assistant", response))
        return TextRow(line, messages=turns)
    if data.format == "messages":
        return TextRow(line, messages=_messages(record, data, where))
    values = {name: _text(record, name, where, "a template column") for name in _required_columns(data)}
    prompt = str(data.prompt_template).format(**values)
    completion = str(data.completion_template).format(**values)
    if not completion.strip():
        raise DataError(f"{where}: the completion ({data.completion_template!r}) is empty; fill it or remove the row")
    return TextRow(line, prompt=prompt, completion=completion)


def _text(record: dict[str, Any], key: str, where: str, what: str) -> str:
    """A non-empty string column."""
    value = string_field(record, key, where, f"{what}; {FIELD_HINT}, or the template's columns")
    if not value.strip():
        raise DataError(f"{where}: field '{key}' ({what}) is empty; write it or remove the row")
    return value.strip()


def _messages(record: dict[str, Any], data: DataConfig, where: str) -> tuple[tuple[str, str], ...]:
    """A chat: a list of {role, content} turns with known roles and at least one assistant turn."""
    key = data.messages_field
    turns = record.get(key)
    if isinstance(turns, str):  # a CSV cell holding the chat as JSON
        try:
            turns = json.loads(turns)
        except json.JSONDecodeError:
            raise DataError(f"{where}: field '{key}' is text, not a JSON list of {{role, content}} turns") from None
    if not isinstance(turns, list) or not turns:
        raise DataError(
            f'{where}: field \'{key}\' must be a non-empty list of {{"role", "content"}} objects, '
            f"got {json_type(turns) if turns != [] else 'an empty list'}"
        )
    messages = []
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or not isinstance(turn.get("role"), str) or "content" not in turn:
            raise DataError(f'{where}: turn {number} of \'{key}\' is not a {{"role", "content"}} object')
        role, content = turn["role"], turn["content"]
        if role not in ROLES:
            raise DataError(f"{where}: turn {number} has unknown role {role!r}; roles are {list(ROLES)}")
        if not isinstance(content, str) or not content.strip():
            raise DataError(f"{where}: turn {number} ({role}) has no text in 'content'; write it or drop the turn")
        if role == "system" and number != 1:
            raise DataError(f"{where}: turn {number} is a system turn; only the first turn may be one")
        messages.append((role, content.strip()))
    if messages[-1][0] != "assistant":
        if not any(role == "assistant" for role, _ in messages):
            raise DataError(f"{where}: '{key}' has no assistant turn; there is nothing to learn from this row")
        raise DataError(f"{where}: '{key}' ends with a {messages[-1][0]} turn; end each chat with the assistant's")
    if data.system and messages[0][0] != "system":
        messages.insert(0, ("system", data.system))
    return tuple(messages)


# ---------------------------------------------------------------------------- rendering


def chat_text(tokenizer: Any, messages: list[tuple[str, str]], generation_prompt: bool) -> str:
    """The chat template's text for `messages` (with the assistant's opening when `generation_prompt`)."""
    turns = [{"role": role, "content": content} for role, content in messages]
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation_prompt)


def render_segments(tokenizer: Any, row: TextRow, where: str = "") -> list[Segment]:
    """The training text of `row` in pieces, the loss on each assistant turn (and its end-of-turn) only.

    The whole chat is rendered once; each assistant turn is the span between the text before it (with
    the assistant's opening, exactly what generation is given) and where the chat goes on differently
    than if it ended there; trailing whitespace stays untrained.
    """
    if not row.messages:
        return [(row.prompt, False), (row.completion + (tokenizer.eos_token or ""), True)]
    full = chat_text(tokenizer, list(row.messages), generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for index, (role, _) in enumerate(row.messages):
        if role != "assistant":
            continue
        before = chat_text(tokenizer, list(row.messages[:index]), generation_prompt=True)
        if not full.startswith(before) or (spans and len(before) < spans[-1][1]):
            raise DataError(
                f"{where or f'line {row.line}'}: the chat template renders the turns before assistant turn "
                f"{index + 1} differently from the whole chat, so the loss cannot be put on the assistant's "
                "text alone; use a template whose text grows turn by turn (model.chat_template)"
            )
        ended = chat_text(tokenizer, list(row.messages[: index + 1]), generation_prompt=False)
        shared = common_prefix_length(ended, full)
        spans.append((len(before), len(before) + len(full[len(before) : shared].rstrip())))
    segments: list[Segment] = []
    done = 0
    for begin, end in spans:
        segments += [(full[done:begin], False), (full[begin:end], True)]
        done = end
    segments.append((full[done:], False))
    return [(text, trained) for text, trained in segments if text]


def generation_prompt(tokenizer: Any, row: TextRow) -> str:
    """The text generation starts from: everything before the last assistant turn, and its opening."""
    if not row.messages:
        return row.prompt
    return chat_text(tokenizer, list(row.messages[:-1]), generation_prompt=True)


def reference(row: TextRow) -> str:
    """The answer generation is scored against: the last assistant turn, or the template's completion."""
    return row.messages[-1][1] if row.messages else row.completion


def prepared_row(tokenizer: Any, row: TextRow, where: str = "") -> dict[str, Any]:
    """The row as `prepare` writes it: the segments to train on, the prompt and reference to evaluate."""
    return {
        "line": row.line,
        "prompt": generation_prompt(tokenizer, row),
        "response": reference(row),
        "segments": [[text, trained] for text, trained in render_segments(tokenizer, row, where)],
    }
