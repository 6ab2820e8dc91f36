"""Dataset readers: every format, every container, the real HH-RLHF file, bad inputs, conversions, writing."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from alignlab.core.readers import read_records, records_fingerprint, write_jsonl
from alignlab.core.records import (
    ConversationRecord,
    PairRecord,
    PromptRecord,
    RankedRecord,
    SafetyPairRecord,
    UnpairedRecord,
    assistant,
    user,
)
from alignlab.errors import DataError

HH_FILE = SHARED_DATA / "hh_harmless_base_test.jsonl.gz"
SYSTEM = {"role": "system", "content": "Be brief."}


def write_rows(path: Path, rows: list[dict]) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return path


def content(records: list) -> list:
    """Records without meta, so expectations need not spell out row numbers."""
    for record in records:
        record.meta = {}
    return records


# ---------------------------------------------------------------------------------------------------
# Every format, read from JSONL
# ---------------------------------------------------------------------------------------------------

FORMAT_CASES = {
    "text": ({"text": "Vell is the capital."}, ConversationRecord([], "Vell is the capital.")),
    "messages": ({"messages": [SYSTEM, user("Capital?"), assistant("Vell.")]},
                 ConversationRecord([SYSTEM, user("Capital?")], "Vell.")),
    "prompt_completion standard": ({"prompt": "Capital?", "completion": " Vell."},
                                   ConversationRecord([user("Capital?")], " Vell.")),
    "prompt_completion conversational": ({"prompt": [user("Capital?")], "completion": [assistant("Vell.")]},
                                         ConversationRecord([user("Capital?")], "Vell.")),
    "preference standard": ({"prompt": "Capital?", "chosen": "Vell.", "rejected": "Paris."},
                            PairRecord([user("Capital?")], "Vell.", "Paris.")),
    "preference conversational": ({"prompt": [SYSTEM, user("Capital?")], "chosen": [assistant("Vell.")],
                                   "rejected": [assistant("Paris.")]},
                                  PairRecord([SYSTEM, user("Capital?")], "Vell.", "Paris.")),
    "implicit_preference": ({"chosen": [user("Capital?"), assistant("Vell.")],
                             "rejected": [user("Capital?"), assistant("Paris.")]},
                            PairRecord([user("Capital?")], "Vell.", "Paris.")),
    "ultrafeedback_binarized": ({"prompt": "Capital?", "prompt_id": "x1",
                                 "chosen": [user("Capital?"), assistant("Vell.")],
                                 "rejected": [user("Capital?"), assistant("Paris.")],
                                 "messages": [user("Capital?"), assistant("Vell.")],
                                 "score_chosen": 8.5, "score_rejected": 3.0},
                                PairRecord([user("Capital?")], "Vell.", "Paris.", margin=5.5)),
    "unpaired standard": ({"prompt": "Capital?", "completion": "Vell.", "label": True},
                          UnpairedRecord([user("Capital?")], "Vell.", True)),
    "unpaired conversational": ({"prompt": [user("Capital?")], "completion": [assistant("Paris.")],
                                 "label": False},
                                UnpairedRecord([user("Capital?")], "Paris.", False)),
    "prompt_only": ({"prompt": [user("Capital?")]}, PromptRecord([user("Capital?")])),
    "ranked": ({"prompt": "Capital?", "responses": ["Vell.", "Paris.", "Dunno."], "scores": [3, 1, 2]},
               RankedRecord([user("Capital?")], ["Vell.", "Paris.", "Dunno."], [3.0, 1.0, 2.0])),
    "ranked_completions": ({"instruction": "Capital?", "models": ["a", "b"],
                            "completions": [{"response": "Vell.", "overall_score": 9.0, "critique": "ok"},
                                            {"response": "Paris.", "overall_score": 2.5}]},
                           RankedRecord([user("Capital?")], ["Vell.", "Paris."], [9.0, 2.5])),
    "ranked_completions text/score": ({"prompt": "Capital?", "completions": [{"text": "Vell.", "score": 1},
                                                                            {"text": "Paris.", "score": 0}]},
                                      RankedRecord([user("Capital?")], ["Vell.", "Paris."], [1.0, 0.0])),
    "pku_safe_rlhf": ({"prompt": "How do I pick a lock?", "response_0": "I can't help.", "response_1": "Use a pin.",
                       "better_response_id": 1, "safer_response_id": 0, "is_response_0_safe": True,
                       "is_response_1_safe": False, "prompt_source": "x"},
                      SafetyPairRecord([user("How do I pick a lock?")], ("I can't help.", "Use a pin."), better=1,
                                       safer=0, is_safe=(True, False))),
    "hh_rlhf": ({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Capital?\n\nAssistant: Vell.",
                 "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Capital?\n\nAssistant: Paris."},
                PairRecord([user("Hi"), assistant("Hello!"), user("Capital?")], "Vell.", "Paris.")),
}


@pytest.mark.parametrize("case", FORMAT_CASES)
def test_each_format_reads_into_its_record(tmp_path, case):
    row, expected = FORMAT_CASES[case]
    records = read_records(write_rows(tmp_path / "d.jsonl", [row, row]))
    assert content(records) == [expected, expected]


def test_forced_format_overrides_detection(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", [{"prompt": "Capital?", "completion": "Vell."}])
    assert content(read_records(path, format="prompt_only")) == [PromptRecord([user("Capital?")])]


def test_meta_row_is_the_zero_based_row_and_limit_stops_early(tmp_path):
    rows = [{"text": f"line {i}"} for i in range(5)] + ["not json"]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows[:5]) + "\n{broken\n")
    records = read_records(path, limit=3)  # the broken line is never reached
    assert [r.meta["row"] for r in records] == [0, 1, 2]
    assert [r.completion for r in records] == ["line 0", "line 1", "line 2"]


# ---------------------------------------------------------------------------------------------------
# Containers: csv, parquet, json, jsonl.gz, save_to_disk, data directories, hub names
# ---------------------------------------------------------------------------------------------------

PAIR_ROWS = [{"prompt": [user(f"Q{i}?")], "chosen": [assistant(f"good {i}")], "rejected": [assistant(f"bad {i}")]}
             for i in range(3)]
PAIRS = [PairRecord([user(f"Q{i}?")], f"good {i}", f"bad {i}") for i in range(3)]


def test_jsonl_gz_and_json_array_and_json_lines_in_a_json_file(tmp_path):
    assert content(read_records(write_rows(tmp_path / "d.jsonl.gz", PAIR_ROWS))) == PAIRS
    (tmp_path / "array.json").write_text(json.dumps(PAIR_ROWS))
    assert content(read_records(tmp_path / "array.json")) == PAIRS
    assert content(read_records(write_rows(tmp_path / "lines.json", PAIR_ROWS))) == PAIRS


def test_csv_decodes_json_cells_numbers_and_booleans(tmp_path):
    path = tmp_path / "d.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "response_0", "response_1", "better_response_id", "safer_response_id",
                         "is_response_0_safe", "is_response_1_safe"])
        writer.writerow(["Lock?", "No.", "Pin, then\ntwist.", "1", "0", "True", "false"])
        writer.writerow(["[INST] hi", "Hi.", "Yo.", "0", "0", "1", "0"])
    records = content(read_records(path))
    assert records == [
        SafetyPairRecord([user("Lock?")], ("No.", "Pin, then\ntwist."), better=1, safer=0, is_safe=(True, False)),
        SafetyPairRecord([user("[INST] hi")], ("Hi.", "Yo."), better=0, safer=0, is_safe=(True, False)),
    ]
    ranked = tmp_path / "ranked.csv"
    with ranked.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["prompt", "responses", "scores"],
                                 [json.dumps([user("Q?")]), json.dumps(["a", "b"]), "[2.5, 1]"]])
    assert content(read_records(ranked)) == [RankedRecord([user("Q?")], ["a", "b"], [2.5, 1.0])]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(PAIR_ROWS), tmp_path / "d.parquet")
    assert content(read_records(tmp_path / "d.parquet")) == PAIRS


def test_datasets_save_to_disk_dataset_and_dataset_dict(tmp_path):
    import datasets

    datasets.Dataset.from_list(PAIR_ROWS).save_to_disk(str(tmp_path / "one"))
    assert content(read_records(tmp_path / "one")) == PAIRS
    datasets.DatasetDict({"train": datasets.Dataset.from_list(PAIR_ROWS[:1]),
                          "test": datasets.Dataset.from_list(PAIR_ROWS[1:])}).save_to_disk(str(tmp_path / "dict"))
    assert content(read_records(tmp_path / "dict", split="test")) == PAIRS[1:]
    with pytest.raises(DataError, match=r"no split 'validation'; the saved dataset has \['test', 'train'\]"):
        read_records(tmp_path / "dict", split="validation")


def test_directory_of_data_files_picks_the_split(tmp_path):
    (tmp_path / "data").mkdir()
    write_rows(tmp_path / "data" / "train-00000-of-00001.jsonl", PAIR_ROWS[:2])
    write_rows(tmp_path / "data" / "test-00000-of-00001.jsonl", PAIR_ROWS[2:])
    assert content(read_records(tmp_path, split="test")) == PAIRS[2:]
    assert content(read_records(tmp_path)) == PAIRS[:2]
    with pytest.raises(DataError, match="no data files for split 'dev'"):
        read_records(tmp_path, split="dev")
    plain = tmp_path / "plain"
    plain.mkdir()
    write_rows(plain / "a.jsonl", PAIR_ROWS[:1])
    write_rows(plain / "b.jsonl", PAIR_ROWS[1:])
    assert content(read_records(plain)) == PAIRS  # no split names: every file is train


def test_hub_name_goes_through_datasets_load_dataset(tmp_path, monkeypatch):
    import datasets

    local = write_rows(tmp_path / "hub.jsonl", PAIR_ROWS)
    real_load_dataset = datasets.load_dataset
    calls = []

    def fake_load_dataset(name, split=None, **kwargs):
        calls.append((name, split))
        return real_load_dataset("json", data_files=str(local), split=split, cache_dir=str(tmp_path / "cache"))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert content(read_records("someone/prefs", "conversation", split="train")) == [
        ConversationRecord(p.prompt, p.chosen) for p in PAIRS]
    assert calls == [("someone/prefs", "train")]

    def offline(name, split=None, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="cannot load hub dataset 'someone/prefs' split 'train': ConnectionError"):
        read_records("someone/prefs")


# ---------------------------------------------------------------------------------------------------
# The real HH-RLHF harmless-base test file
# ---------------------------------------------------------------------------------------------------


def test_real_hh_rlhf_file():
    with pytest.warns(UserWarning, match=r"dropped 4 of 2312 hh_rlhf rows because the final Assistant turn of "
                                         r"'chosen' is empty \(0-based rows 86, 516, 925, 1103\)"):
        pairs = read_records(HH_FILE, "pair")
    assert len(pairs) == 2312 - 4
    assert all(isinstance(p, PairRecord) and p.prompt[-1]["role"] == "user" and p.chosen and p.rejected
               for p in pairs)
    assert all(p.prompt[j]["role"] != p.prompt[j + 1]["role"] for p in pairs for j in range(len(p.prompt) - 1))

    with gzip.open(HH_FILE, "rt") as f:
        raw = [json.loads(line) for line in f]
    first = pairs[0]
    assert first.meta["row"] == 0
    assert [m["role"] for m in first.prompt] == ["user", "assistant", "user", "assistant", "user"]
    assert first.prompt[0]["content"] == "what are some pranks with a pen i can do?"
    assert first.prompt[2]["content"] == "yep"
    assert first.prompt[4]["content"] == "okay some of these do not have anything to do with pens"
    # chosen/rejected are exactly the text after the last Assistant marker of each transcript
    assert first.chosen == raw[0]["chosen"].rsplit("\n\nAssistant: ", 1)[1]
    assert first.rejected == raw[0]["rejected"].rsplit("\n\nAssistant: ", 1)[1]
    assert first.chosen.startswith("No, sorry!  All of these involve a pen")

    # row 1254: the chosen transcript has a doubled Assistant turn; merged, both sides share the prompt
    doubled = next(p for p in pairs if p.meta["row"] == 1254)
    assert doubled.prompt[-1]["content"] == "Isn't that drag kings?"
    assert doubled.chosen.endswith("perform stereotypical women?\n\nI think they call them that because")
    assert doubled.rejected == raw[1254]["rejected"].rsplit("\n\nAssistant: ", 1)[1]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading stops at the limit, before row 86, so nothing is dropped
        conversations = read_records(HH_FILE, "conversation", limit=50)
    assert len(conversations) == 50
    assert conversations[0] == ConversationRecord(first.prompt, first.chosen, meta={"row": 0})


# ---------------------------------------------------------------------------------------------------
# Bad input: every error names source, row and field
# ---------------------------------------------------------------------------------------------------

GOOD_PAIR = {"prompt": "Q?", "chosen": "A.", "rejected": "B."}
BAD_ROWS = {  # case: (second row, field named, text in the message)
    "missing field": ({"prompt": "Q?", "chosen": "A."}, "rejected", "missing field; the row has ['chosen', "
                                                                     "'prompt']"),
    "null field": ({"prompt": "Q?", "chosen": "A.", "rejected": None}, "rejected", "missing value (null)"),
    "wrong type": ({"prompt": "Q?", "chosen": 5, "rejected": "B."}, "chosen", "got int 5"),
    "empty completion": ({"prompt": "Q?", "chosen": "  ", "rejected": "B."}, "chosen", "empty text"),
    "bad role": ({"prompt": [{"role": "bot", "content": "Q?"}], "chosen": "A.", "rejected": "B."}, "prompt",
                 "message 0 has role 'bot'; expected one of system, user, assistant"),
    "answer not ending with assistant": ({"prompt": "Q?", "chosen": [user("A.")], "rejected": "B."}, "chosen",
                                         "must end with an assistant message"),
    "answer conversation off prompt": ({"prompt": "Q?", "chosen": [user("Other?"), assistant("A.")],
                                        "rejected": "B."}, "chosen", "differ from the prompt"),
    "identical pair": ({"prompt": "Q?", "chosen": "Same.", "rejected": "Same."}, "rejected",
                       "chosen and rejected are the same text"),
}


@pytest.mark.parametrize("case", BAD_ROWS)
def test_bad_rows_name_row_and_field(tmp_path, case):
    bad, field, text = BAD_ROWS[case]
    path = write_rows(tmp_path / "d.jsonl", [GOOD_PAIR, bad])
    with pytest.raises(DataError) as error:
        read_records(path, "pair")
    assert (error.value.row, error.value.field, error.value.source) == (1, field, str(path))
    assert text in str(error.value)
    assert f"row 1, field '{field}'" in str(error.value)
    assert "row numbers are 0-based; row 1 is line 2 of the file" in str(error.value)


def test_identical_pair_is_fine_for_conversation(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", [{"prompt": "Q?", "chosen": "Same.", "rejected": "Same."}])
    assert content(read_records(path, "conversation")) == [ConversationRecord([user("Q?")], "Same.")]
    with pytest.raises(DataError, match="kind 'unpaired' needs two different responses"):
        read_records(path, "unpaired")


@pytest.mark.parametrize(("row", "field", "text"), [
    ({"chosen": "\n\nHuman: Hi", "rejected": "\n\nHuman: Hi\n\nAssistant: Yo"}, "chosen",
     "transcript has no '\\n\\nAssistant:' turn"),
    ({"chosen": "\n\nHuman: Hi\n\nAssistant: Yo\n\nHuman: ?", "rejected": "\n\nHuman: Hi\n\nAssistant: Hey"},
     "chosen", "transcript ends with a Human turn"),
    ({"chosen": "Hi\n\nAssistant: Yo", "rejected": "\n\nHuman: Hi\n\nAssistant: Hey"}, "chosen",
     "text before the first"),
    ({"chosen": "\n\nHuman: Hi\n\nAssistant: Yo", "rejected": 3}, "rejected",
     "expected an HH-RLHF transcript string, got int 3"),
    ({"chosen": [user("A"), assistant("x")], "rejected": [user("B"), assistant("y")]}, "rejected",
     "share no prompt"),
    ({"prompt": "Q?", "completion": "A.", "label": "yes"}, "label", "expected a boolean, got str 'yes'"),
    ({"prompt": "Q?", "responses": ["a"], "scores": [1.0]}, "responses", "at least 2 responses, got 1"),
    ({"prompt": "Q?", "responses": ["a", "b"], "scores": [1.0, float("nan")]}, "scores[1]",
     "expected a finite number, got nan"),
    ({"prompt": "Q?", "responses": ["a", "b"], "scores": [1.0]}, "scores", "2 responses but 1 scores"),
    ({"prompt": "Q?", "chosen": "A.", "rejected": "B.", "score_chosen": float("inf"), "score_rejected": 1},
     "score_chosen", "expected a finite number, got inf"),
    ({"prompt": "Q?", "completions": [{"response": "a", "overall_score": 1}, {"response": "b"}]},
     "completions[1].overall_score", "missing value"),
    ({"prompt": "Q?", "response_0": "a", "response_1": "b", "better_response_id": 2, "safer_response_id": 0,
      "is_response_0_safe": True, "is_response_1_safe": True}, "better_response_id", "expected 0 or 1, got int 2"),
    ({"prompt": "Q?", "response_0": "a", "response_1": "b", "better_response_id": 1, "safer_response_id": 0,
      "is_response_0_safe": True}, "is_response_1_safe", "missing field"),
    ({"messages": [user("Hi")]}, "messages", "must end with an assistant message"),
    ({"prompt": ""}, "prompt", "empty prompt"),
])
def test_bad_rows_of_each_format(tmp_path, row, field, text):
    path = write_rows(tmp_path / "d.jsonl", [row])
    with pytest.raises(DataError) as error:
        read_records(path)
    assert (error.value.row, error.value.field) == (0, field)
    assert text in str(error.value)
    assert "row 0 is line 1 of the file" in str(error.value)


def test_invalid_json_names_row_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(GOOD_PAIR) + "\n\n" + json.dumps(GOOD_PAIR) + "\n{not json\n")
    with pytest.raises(DataError, match=r"row 2: invalid JSON at column 2: .* row 2 is line 4 of the file") as e:
        read_records(path)
    assert e.value.row == 2 and e.value.source == str(path)


def test_csv_errors_give_the_line_after_the_header(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('prompt,chosen,rejected\nQ?,A.,B.\n"Multi\nline",,B.\n')
    with pytest.raises(DataError, match=r"row 1, field 'chosen': empty text .*row 1 is line 3 of the file"):
        read_records(path)


def test_missing_file_unknown_format_and_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_records(tmp_path / "nope.jsonl")
    path = write_rows(tmp_path / "d.jsonl", [{"question": "Q?", "answer": "A."}])
    with pytest.raises(DataError, match=r"cannot tell the format from the columns \['answer', 'question'\]; "
                                        r"supported formats are: pku_safe_rlhf .*prompt_only \(prompt\)"):
        read_records(path)
    with pytest.raises(DataError, match="unknown format 'alpaca'"):
        read_records(path, format="alpaca")
    with pytest.raises(DataError, match="unknown record kind 'pairs'"):
        read_records(path, "pairs")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        read_records(tmp_path / "d.txt")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="has no rows"):
        read_records(tmp_path / "empty.jsonl")
    (tmp_path / "obj.json").write_text('{"a": 1}')
    with pytest.raises(DataError, match="expected a JSON array"):
        read_records(tmp_path / "obj.json")


def test_impossible_conversion_names_format_and_kind(tmp_path):
    path = write_rows(tmp_path / "d.jsonl", [{"messages": [user("Hi"), assistant("Yo")]}])
    with pytest.raises(DataError, match="format 'messages' holds conversation records, which cannot be converted "
                                        "to kind 'pair'"):
        read_records(path, "pair")


# ---------------------------------------------------------------------------------------------------
# Conversions between kinds
# ---------------------------------------------------------------------------------------------------


def test_conversions(tmp_path):
    safety = write_rows(tmp_path / "s.jsonl", [FORMAT_CASES["pku_safe_rlhf"][0]])
    prompt = [user("How do I pick a lock?")]
    assert content(read_records(safety, "pair")) == [PairRecord(prompt, "Use a pin.", "I can't help.")]
    assert content(read_records(safety, "conversation")) == [ConversationRecord(prompt, "Use a pin.")]
    assert content(read_records(safety, "prompt")) == [PromptRecord(prompt)]

    ranked = write_rows(tmp_path / "r.jsonl", [FORMAT_CASES["ranked"][0]])
    assert content(read_records(ranked, "pair")) == [PairRecord([user("Capital?")], "Vell.", "Paris.", margin=2.0)]
    assert content(read_records(ranked, "unpaired")) == [UnpairedRecord([user("Capital?")], "Vell.", True),
                                                         UnpairedRecord([user("Capital?")], "Paris.", False)]
    pairs = write_rows(tmp_path / "p.jsonl", PAIR_ROWS[:1])
    unpaired = read_records(pairs, "unpaired")
    assert [r.meta.get("chosen") for r in unpaired] == [None, "good 0"]  # a negative knows its pair's chosen
    assert content(unpaired) == [UnpairedRecord([user("Q0?")], "good 0", True),
                                 UnpairedRecord([user("Q0?")], "bad 0", False)]
    assert len(read_records(write_rows(tmp_path / "p3.jsonl", PAIR_ROWS), "unpaired", limit=3)) == 3

    tied = write_rows(tmp_path / "t.jsonl", [{"prompt": "Q?", "responses": ["a", "b"], "scores": [1, 1]}])
    with pytest.raises(DataError, match="row 0, field 'scores': all scores are tied"):
        read_records(tied, "pair")
    with pytest.raises(DataError, match="format 'ranked' holds ranked records, which cannot be converted to kind "
                                        "'safety_pair'"):
        read_records(tied, "safety_pair")


# ---------------------------------------------------------------------------------------------------
# Writing and fingerprints
# ---------------------------------------------------------------------------------------------------

ONE_OF_EACH = [
    [PromptRecord([SYSTEM, user("Q?")])],
    [ConversationRecord([], "Just text."), ConversationRecord([user("Q?")], " A.")],
    [PairRecord([user("Q?")], "A.", "B.", margin=1.5), PairRecord([user("Q?")], "A.", "C.")],
    [RankedRecord([user("Q?")], ["a", "b", "c"], [0.5, 2.0, -1.0])],
    [UnpairedRecord([user("Q?")], "A.", True, meta={"source": "world"}), UnpairedRecord([user("Q?")], "B.", False)],
    [SafetyPairRecord([user("Q?")], ("a", "b"), better=0, safer=1, is_safe=(False, True))],
]


@pytest.mark.parametrize("records", ONE_OF_EACH, ids=lambda records: records[0].kind)
@pytest.mark.parametrize("name", ["out.jsonl", "nested/out.jsonl.gz"])
def test_write_then_read_round_trip(tmp_path, records, name):
    path = write_jsonl(records, tmp_path / name)
    back = read_records(path)
    assert [r.meta.pop("row") for r in back] == list(range(len(records)))
    assert back == records
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_write_is_trl_conversational_and_atomic(tmp_path):
    path = write_jsonl(ONE_OF_EACH[2], tmp_path / "pairs.jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {"prompt": [user("Q?")], "chosen": [assistant("A.")], "rejected": [assistant("B.")],
                     "margin": 1.5}
    before = path.read_text()
    with pytest.raises(DataError, match="records of several kinds"):
        write_jsonl(ONE_OF_EACH[1] + ONE_OF_EACH[2], path)
    assert path.read_text() == before  # a failed write leaves the old file whole
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.jsonl"]


def test_records_fingerprint(tmp_path):
    records = [r for rs in ONE_OF_EACH for r in rs]
    fingerprint = records_fingerprint(records)
    assert len(fingerprint) == 64 and fingerprint == records_fingerprint(list(records))
    assert records_fingerprint(records[::-1]) != fingerprint
    pair = PairRecord([user("Q?")], "A.", "B.", margin=1.5)
    for changed in (PairRecord([user("Q?")], "A!", "B.", margin=1.5), PairRecord([user("Q?")], "A.", "B."),
                    PairRecord([user("Q.")], "A.", "B.", margin=1.5), ConversationRecord([user("Q?")], "A.")):
        assert records_fingerprint([changed]) != records_fingerprint([pair])
    assert records_fingerprint([PairRecord([user("Q?")], "A.", "B.", margin=1.5, meta={"row": 7})]) == \
        records_fingerprint([pair])  # meta is not content

    # the same records read back in a fresh process give the same fingerprint
    paths = [write_jsonl(rs, tmp_path / f"{i}.jsonl") for i, rs in enumerate(ONE_OF_EACH)]
    code = ("import sys; from alignlab.core.readers import read_records, records_fingerprint; "
            "print(records_fingerprint([r for p in sys.argv[1:] for r in read_records(p)]))")
    fresh = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True,
                           check=True)
    assert fresh.stdout.strip() == fingerprint


def test_parity_with_trl_prompt_extraction_and_unpairing(tmp_path):
    from datasets import Dataset
    from trl.data_utils import extract_prompt, is_conversational, unpair_preference_dataset

    rows = [{"chosen": [SYSTEM, user("Hi"), assistant("Hello!"), user("Capital?"), assistant("Vell.")],
             "rejected": [SYSTEM, user("Hi"), assistant("Hello!"), user("Capital?"), assistant("Paris.")]},
            {"chosen": [user("2+2?"), assistant("4")], "rejected": [user("2+2?"), assistant("5")]}]
    pairs = read_records(write_rows(tmp_path / "implicit.jsonl", rows))
    for row, pair in zip(rows, pairs, strict=True):
        theirs = extract_prompt(row)
        assert (theirs["prompt"], theirs["chosen"], theirs["rejected"]) == (
            pair.prompt, [assistant(pair.chosen)], [assistant(pair.rejected)])

    written = write_jsonl(pairs, tmp_path / "pairs.jsonl")
    trl_rows = [json.loads(line) for line in written.read_text().splitlines()]
    assert all(is_conversational(row) for row in trl_rows)
    theirs = unpair_preference_dataset(Dataset.from_list([{k: row[k] for k in ("prompt", "chosen", "rejected")}
                                                          for row in trl_rows]))
    ours = read_records(written, "unpaired")  # TRL orders a batch's chosen before its rejected: compare as sets
    assert sorted((json.dumps(r["prompt"]), r["completion"][0]["content"], r["label"]) for r in theirs) == \
        sorted((json.dumps(r.prompt), r.completion, r.label) for r in ours)
