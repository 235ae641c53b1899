"""Data: file formats, prompt and chat masking, packing, samples, held-out split, cache, errors."""

from __future__ import annotations

import json
import pickle

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from datasets.utils._dill import Pickler
from tokenizers.processors import TemplateProcessing
from transformers import AutoTokenizer

import shardwise.corpus
from shardwise.config import Config, ConfigError, DataConfig, load_config
from shardwise.corpus import Documents, load_documents, stdlib_corpus, stdlib_file
from shardwise.data import (
    EOS,
    Batch,
    DocumentSamples,
    StepBatches,
    TokenWindows,
    byte_tokenizer,
    load_data,
    load_tokens,
    pad_to_multiple,
    split_documents,
    split_sequence,
)


def test_byte_tokenizer_is_bytes_and_round_trips(tmp_path):
    tok = byte_tokenizer()
    text = "héllo\n  wörld\t"
    assert tok(text)["input_ids"] == list(text.encode()) and tok.eos_token_id == 256 and len(tok) == 257
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.decode(again(text)["input_ids"]) == text


def test_stdlib_corpus_is_deterministic(tmp_path):
    a = load_tokens(DataConfig(max_bytes=50_000, cache_dir=str(tmp_path)), byte_tokenizer())
    b = load_tokens(DataConfig(max_bytes=50_000, cache_dir=str(tmp_path / "other")), byte_tokenizer())
    assert len(a) >= 50_000 and torch.equal(a, b)


def test_global_batch_is_the_same_on_every_layout():
    windows = TokenWindows(torch.arange(10_000), seq_len=16, seed=3)
    whole = torch.cat([b.input_ids for b in StepBatches(windows, 8, 8, 0, 1)(step=2)])
    split = [b.input_ids for r in range(4) for b in StepBatches(windows, 8, 1, r, 4)(step=2)]
    assert torch.equal(whole, torch.cat(split))
    assert not torch.equal(whole, torch.cat([b.input_ids for b in StepBatches(windows, 8, 8, 0, 1)(step=3)]))


def test_indivisible_batch_names_the_keys():
    windows = TokenWindows(torch.arange(1000), seq_len=8, seed=0)
    with pytest.raises(ConfigError, match=r"global_batch_size=6 must be a multiple of dp \(2\) x train.micro_batch_size \(2\); "
                       r"try train.global_batch_size=8"):
        StepBatches(windows, 6, 2, 0, 2)
    with pytest.raises(ConfigError, match=r"global_batch_size=3 must be a multiple of dp \(2\); try train.global_batch_size=4$"):
        StepBatches(windows, 3, 2, 0, 2)  # not "x train.micro_batch_size (1)": the user asked for 2


def test_micro_batch_larger_than_a_ranks_share_is_that_share():
    """The default job (16 sequences, micro-batch 8) on 4 DP ranks: one micro-batch of 4 per rank, same samples."""
    windows = TokenWindows(torch.arange(10_000), seq_len=16, seed=3)
    per_rank = [StepBatches(windows, 16, 8, r, 4)(step=1) for r in range(4)]
    assert all(len(b) == 1 and b[0].input_ids.shape == (4, 16) for b in per_rank)
    whole = StepBatches(windows, 16, 16, 0, 1)(step=1)[0].input_ids
    assert torch.equal(torch.cat([b[0].input_ids for b in per_rank]), whole)


def test_pad_to_multiple_ignores_padding_and_continues_positions():
    ids = torch.arange(10).view(2, 5)
    batch = pad_to_multiple(Batch(ids, ids + 1, torch.arange(5).expand(2, 5)), 4)
    assert batch.input_ids.shape == (2, 8)
    assert (batch.labels[:, 5:] == -100).all()
    assert batch.position_ids[0].tolist() == list(range(8))


def test_split_sequence_keeps_a_chunk_its_mirror_and_whole_row_documents():
    """cp=2 cuts rows of 8 into 4 chunks of 2: rank 0 holds chunks 0 and 3, rank 1 chunks 1 and 2, with their
    labels and positions; both get the document ids of the whole rows (the second document spans chunks 1-3)."""
    ids = torch.arange(16).view(2, 8)
    positions = torch.tensor([[0, 1, 2, 0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11, 12]])
    batch = Batch(ids, ids + 100, positions)
    rank0, rank1 = (split_sequence(batch, 2, r) for r in (0, 1))
    assert rank0.input_ids.tolist() == [[0, 1, 6, 7], [8, 9, 14, 15]]
    assert rank1.input_ids.tolist() == [[2, 3, 4, 5], [10, 11, 12, 13]]
    assert torch.equal(rank1.labels, rank1.input_ids + 100)
    assert rank1.position_ids.tolist() == [[2, 0, 1, 2], [7, 8, 9, 10]]
    for local in (rank0, rank1):
        assert local.documents.tolist() == [[1, 1, 1, 2, 2, 2, 2, 2], [0] * 8]
        assert local.packed is True
    assert split_sequence(batch, 1, 0) is batch


def test_a_token_stream_cut_into_documents():
    """Synthetic documents (verify's): positions restart and the first token of each is never a label."""
    docs = Documents.from_tokens(torch.arange(100, 130), lengths=torch.tensor([4, 7, 50]).numpy())
    assert docs.lengths.tolist() == [4, 7, 19]
    (batch,) = StepBatches(TokenWindows(docs, seq_len=29, seed=0), 1, 1, 0, 1)(step=0)
    assert batch.position_ids.tolist() == [[*range(4), *range(7), *range(18)]]
    assert (batch.labels == -100).nonzero()[:, 1].tolist() == [3, 10]


def test_too_little_data_for_a_window():
    with pytest.raises(ConfigError, match="fewer than train.seq_len"):
        TokenWindows(torch.arange(5), seq_len=8, seed=0)


def write_jsonl(path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def doc_texts(cfg: DataConfig) -> list[str]:
    """Each document decoded without its EOS."""
    tok = byte_tokenizer()
    docs = load_documents(cfg, tok)
    texts = [tok.decode(docs.get(i)[0].tolist()) for i in range(len(docs))]
    assert all(t.endswith(EOS) for t in texts)
    return [t.removesuffix(EOS) for t in texts]


TEXTS = ["first document\n\nwith a blank line", "zweites Dokument, ünïcode", "third"]


@pytest.mark.parametrize("kind", ["txt-folder", "jsonl", "json-array", "parquet", "glob"])
def test_each_file_type_loads(kind, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    if kind == "txt-folder":
        for i, text in enumerate(TEXTS):  # one document per file, nested folders searched, hidden skipped
            sub = data / ("a" if i else "") / f"{i}.txt"
            sub.parent.mkdir(exist_ok=True)
            sub.write_text(text)
        (data / ".hidden").mkdir()
        (data / ".hidden" / "x.txt").write_text("never read")
        path = str(data)
    elif kind in ("jsonl", "glob"):
        write_jsonl(data / "a.jsonl", [{"text": t, "meta": 0} for t in TEXTS[:2]])  # other fields are ignored
        write_jsonl(data / "b.jsonl", [{"text": TEXTS[2], "meta": 1}])
        path = str(data / "a.jsonl") if kind == "jsonl" else str(data / "*.jsonl")
    elif kind == "json-array":
        (data / "a.json").write_text(json.dumps([{"text": t} for t in TEXTS]))
        path = str(data / "a.json")
    else:
        pq.write_table(pa.table({"text": TEXTS}), data / "a.parquet")
        path = str(data / "a.parquet")
    expected = TEXTS[:2] if kind == "jsonl" else TEXTS
    assert doc_texts(DataConfig(path=path, cache_dir=str(tmp_path / "cache"))) == expected


def labeled_runs(labels: torch.Tensor) -> list[str]:
    """The decoded text of each contiguous run of non-ignored labels."""
    tok, runs, run = byte_tokenizer(), [], []
    for label in [*labels.tolist(), -100]:
        if label == -100 and run:
            runs.append(tok.decode(run))
            run = []
        elif label != -100:
            run.append(label)
    return runs


def run_config(path: str, tmp_path, **overrides: str) -> Config:
    return load_config(None, {"data.path": path, "data.cache_dir": str(tmp_path / "cache"), "train.seq_len": "200",
                              "data.val_fraction": "0", **overrides})


def test_prompt_completion_trains_on_the_completion_only(tmp_path):
    qa = {"Q: 2+2?\nA:": " 4", "Q: capital of France?\nA:": " Paris"}
    path = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": p, "completion": c} for p, c in qa.items()])
    samples, _ = load_data(run_config(path, tmp_path, **{"data.packing": "false"}), byte_tokenizer())
    for i in range(2):
        inputs, labels, _ = samples.sample(i)
        prompt = byte_tokenizer().decode(inputs[: inputs.tolist().index(ord("A")) + 2])
        n = len(prompt)  # one byte per token: labels 0..n-2 predict the prompt's tokens 1..n-1
        assert (labels[: n - 1] == -100).all() and labels[n - 1] != -100
        assert labeled_runs(labels) == [qa[prompt] + EOS]


def test_documents_start_with_the_tokenizers_own_bos(tmp_path):
    tok = byte_tokenizer()
    tok.add_special_tokens({"bos_token": "<s>"})
    tok.backend_tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 257)])
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "ab", "completion": "c"}])
    ids, target = load_documents(DataConfig(path=path, cache_dir=str(tmp_path)), tok).get(0)
    assert (ids.tolist(), target.tolist()) == ([257, ord("a"), ord("b"), ord("c"), 256], [0, 0, 0, 1, 1])


@pytest.mark.parametrize("key,value,message", [
    ("data.val_fraction", "1", "data.val_fraction=1.0 must be in \\[0, 1\\)"),
    ("data.val_batches", "0", "data.val_batches=0 must be >= 1"),
    ("data.num_proc", "-1", "data.num_proc=-1 must be >= 0"),
    ("train.eval_every", "-1", "train.eval_every=-1 must be >= 0"),
    ("train.gc_every", "-1", "train.gc_every=-1 must be >= 0"),
])
def test_data_keys_are_checked(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, {key: value})


CHATS = [
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a?"}, {"role": "assistant", "content": "bb"},
     {"role": "user", "content": "c?"}, {"role": "assistant", "content": "dd"}],
]
CHATML = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\nYou are helpful."
          "<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TAGGED = ("{% for m in messages %}<|{{ m['role'] }}|>\n{% if m['role'] == 'assistant' %}{% generation %}"
          "{{ m['content'] }}!{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}\n{% endfor %}")


@pytest.mark.parametrize("template,ends", [(None, EOS), (CHATML, "<|im_end|>\n"), (TAGGED, "!")])
def test_chat_trains_on_assistant_turns_only(template, ends, tmp_path):
    """Built-in template, a ChatML one (prefix diffs) and one with {% generation %} tags."""
    tok = byte_tokenizer()
    tok.chat_template = template or tok.chat_template
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": c} for c in CHATS])
    samples, _ = load_data(run_config(path, tmp_path, **{"data.packing": "false"}), tok)
    runs = sorted(r for i in range(2) for r in labeled_runs(samples.sample(i)[1]))
    assert runs == sorted(f"{answer}{ends}" for answer in ("yo", "bb", "dd"))


def test_chat_errors_name_the_tokenizer(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": c} for c in CHATS])
    tok = byte_tokenizer()
    tok.chat_template = None
    with pytest.raises(ConfigError, match="holds chat 'messages' but the tokenizer has no chat template; set data.tokenizer"):
        load_documents(DataConfig(path=path, cache_dir=str(tmp_path)), tok)
    tok.chat_template = "{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(ConfigError, match="chat template of data.tokenizer renders earlier turns differently"):
        load_documents(DataConfig(path=path, cache_dir=str(tmp_path)), tok)


def test_packed_windows_restart_positions_and_never_predict_across_documents():
    table = pa.table({"input_ids": pa.array([[1, 2, 3], [4, 5], [6, 7, 8, 9]], pa.list_(pa.int32())),
                      "target": pa.array([[0, 1, 1], [0, 1], [0, 1, 1, 1]], pa.list_(pa.int8()))})
    windows = TokenWindows(Documents.from_table(table), seq_len=4, seed=0)
    samples = sorted((s[0].tolist(), s[1].tolist(), s[2].tolist()) for s in map(windows.sample, range(len(windows))))
    assert samples == [([1, 2, 3, 4], [2, 3, -100, 5], [0, 1, 2, 0]), ([5, 6, 7, 8], [-100, 7, 8, 9], [0, 0, 1, 2])]


def test_unpacked_samples_are_cut_or_padded():
    docs = Documents.from_tokens(torch.arange(10))
    inputs, labels, positions = DocumentSamples(docs, seq_len=4, seed=0).sample(0)
    assert (inputs.tolist(), labels.tolist(), positions.tolist()) == ([0, 1, 2, 3], [1, 2, 3, 4], [0, 1, 2, 3])
    inputs, labels, _ = DocumentSamples(docs, seq_len=12, seed=0).sample(0)
    assert inputs.tolist() == [*range(9), 0, 0, 0] and labels.tolist() == [*range(1, 10), -100, -100, -100]


def test_held_out_split_is_seeded_disjoint_and_complete():
    train, val = split_documents(250, 0.01, seed=1)
    assert len(val) == 3 and sorted([*train, *val]) == list(range(250))
    assert (split_documents(250, 0.01, seed=1)[1] == val).all() and not (split_documents(250, 0.01, seed=2)[1] == val).all()
    assert len(split_documents(5, 0.0, seed=1)[1]) == 0
    train, val = split_documents(1, 0.5, seed=0)  # nothing left to train on: hold nothing out
    assert train.tolist() == [0] and len(val) == 0


def test_too_little_held_out_data_turns_val_loss_off_with_a_warning(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "x" * 200}, {"text": "short"}])
    cfg = run_config(path, tmp_path, **{"data.val_fraction": "0.5", "train.seq_len": "64", "train.seed": "1"})
    assert load_data(cfg, byte_tokenizer())[1] is None
    assert "have fewer than train.seq_len+1=65 tokens; val_loss is off" in capsys.readouterr().err
    one = write_jsonl(tmp_path / "one.jsonl", [{"text": "y" * 300}])
    train, val = load_data(run_config(one, tmp_path, **{"train.seq_len": "64", "data.val_fraction": "0.01"}),
                           byte_tokenizer())
    assert val is None and len(train) > 0
    assert "1 document(s) are too few to hold out data.val_fraction=0.01; val_loss is off" in capsys.readouterr().err


def test_tokenization_is_cached_by_file_and_tokenizer(tmp_path, monkeypatch):
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [{"text": "hello"}])
    cfg = DataConfig(path=str(path), cache_dir=str(tmp_path / "cache"))
    first = load_tokens(cfg, byte_tokenizer())

    def fail(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(shardwise.corpus, "tokenize_batch", fail)
    assert torch.equal(load_tokens(cfg, byte_tokenizer()), first)  # served from the cache
    assert len(list((tmp_path / "cache" / "shardwise").glob("*.arrow"))) == 1
    tok = byte_tokenizer()
    tok.chat_template = "{{ messages }}"
    with pytest.raises(AssertionError, match="tokenized again"):  # another tokenizer: another fingerprint
        load_tokens(cfg, tok)
    write_jsonl(path, [{"text": "hello, again"}])
    with pytest.raises(AssertionError, match="tokenized again"):  # changed file: another fingerprint
        load_tokens(cfg, byte_tokenizer())


def test_parallel_tokenization_gives_the_same_documents(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": f"document {i} " * (i % 5 + 1)} for i in range(40)])
    one = load_tokens(DataConfig(path=path, cache_dir=str(tmp_path / "a"), num_proc=1), byte_tokenizer())
    two = load_tokens(DataConfig(path=path, cache_dir=str(tmp_path / "b"), num_proc=2), byte_tokenizer())
    assert torch.equal(one, two) and len(list((tmp_path / "b" / "shardwise").glob("*.arrow"))) == 2


@pytest.fixture
def arrow_tables_unpicklable(monkeypatch):
    """Pickling or hashing an in-memory Arrow table fails, as ``datasets`` fingerprinting does on some
    Python 3.12 images; the data layer must never need it."""
    def refuse(*args, **kwargs):
        raise pickle.PicklingError("Can't pickle <class 'MonthDayNano'>: it's not found as builtins.MonthDayNano")

    monkeypatch.setattr(datasets.table.InMemoryTable, "__getstate__", refuse)  # hashing, or sending to workers
    for arrow_type in (pa.Table, pa.ChunkedArray):  # hashing a bare Arrow table or column
        monkeypatch.setitem(Pickler.dispatch, arrow_type, refuse)


@pytest.mark.parametrize("num_proc", [1, 2])
@pytest.mark.parametrize("kind", ["stdlib", "text", "completion", "chat"])
def test_data_loads_without_pickling_arrow_tables(kind, num_proc, tmp_path, arrow_tables_unpicklable):
    """Every source tokenizes (in this process, or in worker processes) and loads back from the cache."""
    tok = byte_tokenizer()
    qa = {"Q: 2+2?\nA:": " 4", "Q: capital of France?\nA:": " Paris"}
    path, expected = {
        "stdlib": ("", [t for t in stdlib_corpus(20_000) if t.strip()]),
        "text": (write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in TEXTS]), TEXTS),
        "completion": (write_jsonl(tmp_path / "c.jsonl", [{"prompt": p, "completion": c} for p, c in qa.items()]),
                       [p + c for p, c in qa.items()]),
        "chat": (write_jsonl(tmp_path / "m.jsonl", [{"messages": c} for c in CHATS]),
                 [tok.apply_chat_template(c, tokenize=False).removesuffix(EOS) for c in CHATS]),
    }[kind]
    cfg = DataConfig(path=path, max_bytes=20_000, cache_dir=str(tmp_path / "cache"), num_proc=num_proc)
    assert len(expected) >= 2 and doc_texts(cfg) == expected
    assert doc_texts(cfg) == expected  # from the cache


def test_stdlib_corpus_file_is_written_atomically_and_once(tmp_path, monkeypatch):
    def interrupted(table, where):  # a write that dies halfway
        with open(where, "wb") as half:
            half.write(b"PAR1 half a file")
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(shardwise.corpus.pq, "write_table", interrupted)
        with pytest.raises(KeyboardInterrupt):
            stdlib_file(20_000, tmp_path)
    assert list((tmp_path / "shardwise").iterdir()) == []  # neither a corpus file nor the partial one
    path = stdlib_file(20_000, tmp_path)
    assert pq.read_table(path).column("text").to_pylist() == stdlib_corpus(20_000)
    monkeypatch.setattr(shardwise.corpus.pq, "write_table", interrupted)
    assert stdlib_file(20_000, tmp_path) == path  # there already: not written again


def _write(tmp_path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


@pytest.mark.parametrize("files,target,message", [
    ({"e.jsonl": ""}, "e.jsonl", "data.path=.*e.jsonl: .*e.jsonl is empty"),
    ({"blank.txt": "   \n"}, "blank.txt", "data.path=.*blank.txt holds no text to train on"),
    ({"d.csv": "text\nx\n"}, "d.csv", "data.path=.*d.csv: unsupported file type .csv; use .txt, .jsonl"),
    ({"d.jsonl": '{"body": "x", "id": 1}\n'}, "d.jsonl",
     "data.path=.*d.jsonl: records need a 'text' field, 'prompt' and 'completion', or chat 'messages'; found body, id"),
    ({"d.jsonl": '{"prompt": [{"role": "user", "content": "x"}], "completion": "y"}\n'}, "d.jsonl",
     "data.path=.*d.jsonl: field 'prompt' must hold strings, not List"),
    ({"d.parquet": b"not parquet at all"}, "d.parquet", "data.path=.*d.parquet cannot be read: ArrowInvalid: "),
    ({"d.jsonl": '{"text": "x"\n'}, "d.jsonl", "data.path=.*d.jsonl cannot be read: ArrowInvalid: JSON parse error"),
    ({"x/a.txt": "a", "x/b.jsonl": '{"text": "b"}\n'}, "x", "data.path=.*x mixes json and text files; use one format"),
    ({"x/readme.md": "a"}, "x", "data.path=.*x matches no .txt, .jsonl, .json or .parquet file"),
    ({}, "none.jsonl", "data.path=.*none.jsonl does not exist"),
])
def test_bad_data_is_one_line_naming_data_path(files, target, message, tmp_path):
    for name, content in files.items():
        _write(tmp_path, name, content)
    with pytest.raises(ConfigError, match=message) as err:
        load_documents(DataConfig(path=str(tmp_path / target), cache_dir=str(tmp_path / "cache")), byte_tokenizer())
    assert "\n" not in str(err.value)
