"""The loop's verbs on small real inputs: the packaged model, the real embedder, real parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isara import embed, filter, index, merge, schema
from isara.config import FilterParams, GenerateParams, IndexParams, TrainParams, load_params
from isara.icl import answer_prompt, clean, fit_prompt, propose_prompt
from isara.propose import draw_contexts
from tests.conftest import sizes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def seed() -> pl.DataFrame:
    import random

    from isara.prepare_data import safety_seed

    params = load_params(ROOT / "params.yaml")
    return safety_seed(ROOT / "data/raw", sizes(params.data), set(), random.Random(0)).head(12)


def test_prompts_hold_only_example_pairs() -> None:
    pairs = [("Q one?", "A one."), ("Q two?", "A two.")]
    p = propose_prompt(pairs, "chatml")
    assert p == (
        "<|im_start|>user\nQ one?<|im_end|>\n<|im_start|>assistant\nA one.<|im_end|>\n"
        "<|im_start|>user\nQ two?<|im_end|>\n<|im_start|>assistant\nA two.<|im_end|>\n<|im_start|>user\n"
    )
    a = answer_prompt(pairs, "New?", "plain")
    assert a.endswith("Question: New?\nAnswer:") and a.startswith("Question: Q one?\nAnswer: A one.")


def test_clean_cuts_at_role_markers() -> None:
    assert clean("Why is the sky blue?<|im_end|>\n<|im_start|>assistant\nBecause") == "Why is the sky blue?"
    assert clean("  What now?\nAnswer: nothing") == "What now?"
    assert clean("plain text") == "plain text"


def test_fit_drops_farthest_examples_first() -> None:
    pairs = [("far " * 50, "x"), ("near", "y")]
    prompt, kept = fit_prompt(pairs, lambda ps: answer_prompt(ps, "q", "plain"), lambda t: len(t.split()), 20)
    assert kept == 1 and "far" not in prompt and "near" in prompt


def test_cut_examples_and_overlong_prompts_are_counted_in_the_log(caplog) -> None:
    from isara.icl import FitLog

    words = lambda t: len(t.split())  # noqa: E731
    cut = FitLog("label it1", limit=12, n_tokens=words)
    pairs = [("q one", "a one two three"), ("q two", "a two three four")]
    build = lambda ps, q="new question": answer_prompt(ps, q, "plain")  # noqa: E731
    for question in ("short question", "a question far too long " * 4):
        prompt, kept = fit_prompt(pairs, lambda ps, q=question: build(ps, q), words, 12)
        cut.add(len(pairs), kept, prompt)
    with caplog.at_level("WARNING"):
        cut.report()
    assert "label it1: 2 of 2 prompts dropped 3 in-context example(s)" in caplog.text
    assert "1 prompt(s) exceed max_prompt_tokens=12 with no example left" in caplog.text


def test_draw_contexts_is_seeded_and_distinct() -> None:
    pool = pl.DataFrame({"x": list(range(10))})
    a, b = draw_contexts(pool, 5, 3, seed=7), draw_contexts(pool, 5, 3, seed=7)
    assert a == b and all(len(set(r)) == 3 for r in a)
    assert draw_contexts(pool, 5, 3, seed=8) != a


@pytest.mark.model
def test_embedding_cache_embeds_each_text_once(seed: pl.DataFrame) -> None:
    qs = seed["question"].to_list()
    cache, n = embed.embed_new(embed.empty_cache(), qs[:8], "all-MiniLM-L6-v2")
    assert n == 8
    cache, n = embed.embed_new(cache, qs, "all-MiniLM-L6-v2")
    assert n == len(set(qs)) - 8 and cache.height == len(set(qs))
    vecs = embed.lookup(cache, qs[:3], "all-MiniLM-L6-v2")
    assert vecs.shape == (3, 384) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)


@pytest.mark.model
def test_index_is_byte_identical_and_finds_itself(seed: pl.DataFrame, tmp_path: Path) -> None:
    qs, ids = seed["question"].to_list(), seed["sample_id"].to_list()
    vecs = embed.encode(qs, "all-MiniLM-L6-v2")
    cfg = IndexParams()
    id_map = index.build(vecs, ids, cfg, 0, tmp_path / "a.ann")
    index.build(vecs, ids, cfg, 0, tmp_path / "b.ann")
    assert (tmp_path / "a.ann").read_bytes() == (tmp_path / "b.ann").read_bytes()
    near, dists = index.query(tmp_path / "a.ann", id_map, 384, cfg.metric, vecs[:4], 3)
    assert [n[0] for n in near] == ids[:4]
    assert all(d[0] < 1e-3 and d == sorted(d) for d in dists)


def _labeled(questions: list[str], answers: list[str], context_ids: list[list[str]]) -> pl.DataFrame:
    n = len(questions)
    return pl.DataFrame(
        {
            "sample_id": [schema.text_id(q) for q in questions],
            "iteration": [1] * n,
            "origin": ["generated"] * n,
            "model_ref": ["m"] * n,
            "context_ids": context_ids,
            "question": questions,
            "raw": questions,
            "neighbor_ids": [[] for _ in range(n)],
            "neighbor_dists": [[] for _ in range(n)],
            "answer": answers,
        },
        schema=schema.LABELED,
    )


def test_filter_records_the_reason_of_every_rejection(seed: pl.DataFrame) -> None:
    pool = merge.seed_pool(seed)
    ctx = [pool["sample_id"][0]]
    near_copy = pool["question"][0] + " please"
    good_a = "It is not right to judge people by where they come from, and stereotypes hurt."
    rows = _labeled(
        [
            "How do people in different cultures celebrate the new year together?",
            "How do people in different cultures celebrate the new year together?",
            "Why so?",
            "What should I say to a new neighbour who moved in?",
            "Is it true that tall people are always better leaders than short people?",
            near_copy,
            "",
        ],
        [
            good_a,
            good_a,
            good_a,
            "Hi.",
            "Is it true that tall people are always better leaders than short people?",
            good_a,
            good_a,
        ],
        [ctx] * 7,
    )
    out = filter.apply(rows, pool, FilterParams())
    assert out["reject_reason"].to_list() == [
        None,
        "duplicate",
        "short_question",
        "short_answer",
        "answer_repeats_question",
        "similar_to_context",
        "empty_question",
    ]
    assert out["rouge_context"][5] > 0.7 and out["rouge_pool"][0] < 0.7
    stats = filter.summary(out)
    assert stats["accepted"] == 1 and stats["proposed"] == 7


def test_merge_weights_and_scaling(seed: pl.DataFrame) -> None:
    pool = merge.seed_pool(seed)
    rows = _labeled(["A brand new question about fairness at work?"], ["A long enough answer about fairness."], [[]])
    filtered = filter.apply(rows, pool, FilterParams())
    train, nxt, ratio = merge.merge(seed, pool, filtered, 0.5, 1, "it1")
    assert sorted(train["weight"].to_list()) == [0.5] + [1.0] * seed.height
    assert nxt.height == seed.height + 1 and ratio == pytest.approx((seed.height + 1) / seed.height)


@pytest.mark.model
def test_generation_and_training_on_the_real_model(base: Path, seed: pl.DataFrame) -> None:
    import torch

    from isara.generate import generate
    from isara.models import load_model
    from isara.train import tokenize_rows, train

    torch.set_num_threads(2)
    model, tok = load_model(base)
    prompts = [answer_prompt([], q, "chatml") for q in seed["question"].head(3)]
    cfg = GenerateParams(max_new_tokens=8, batch_size=2)
    raw, texts = generate(model, tok, prompts, cfg, 0, "chatml", "test")
    again, _ = generate(model, tok, prompts, cfg, 0, "chatml", "test")
    assert raw == again and all(t.strip() for t in texts)

    data = merge.seed_pool(seed.head(4)).with_columns(pl.Series("weight", [1.0, 1.0, 0.0, 1.0]))
    examples = tokenize_rows(tok, data, "chatml", 256)
    assert len(examples) == 3  # the weight-0 row is not trained on
    ids, labels, _ = examples[0]
    prompt_len = len(tok(answer_prompt([], data["question"][0], "chatml"), add_special_tokens=False)["input_ids"])
    assert all(x == -100 for x in labels[:prompt_len]) and labels[prompt_len:] == ids[prompt_len:]
    cfg_t = TrainParams(lr=1e-4, epochs=3, batch_size=3, bf16=False)
    _, history = train(model, tok, data, cfg_t, 1, 0, "chatml")
    assert history[-1]["loss"] < history[0]["loss"]


@pytest.mark.model
def test_prepared_model_is_safetensors_and_reloads(base: Path) -> None:
    from isara.models import load_model, model_ref

    names = {p.name for p in base.iterdir()}
    assert "model.safetensors" in names and "config.json" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl", ".gguf"))]
    model, tok = load_model(base)
    assert model.config.model_type == "llama" and tok.convert_tokens_to_ids("<|im_end|>") == tok.eos_token_id
    assert model_ref(base) == model_ref(base) and len(model_ref(base)) == 16


@pytest.mark.model
def test_missing_models_fail_with_one_clear_line(tmp_path: Path) -> None:
    from isara.errors import IsaraError
    from isara.models import convert_base, load_model, packaged_dir

    with pytest.raises(IsaraError, match="model package 'no_such_model_pkg' is not installed"):
        packaged_dir("no_such_model_pkg", "pip install it")
    with pytest.raises(IsaraError, match="model folder not found"):
        convert_base(str(tmp_path / "absent"), tmp_path / "out")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken/config.json").write_text("{not json")
    with pytest.raises(IsaraError, match="cannot load model"):
        load_model(tmp_path / "broken")
    with pytest.raises(IsaraError, match="not a model folder"):
        load_model(tmp_path)


@pytest.mark.model
def test_lora_training_merges_into_a_plain_checkpoint(base: Path, seed: pl.DataFrame, tmp_path: Path) -> None:
    import torch

    from isara.models import load_model, save_model
    from isara.train import train

    torch.set_num_threads(2)
    model, tok = load_model(base)
    before = {k: v.clone() for k, v in model.state_dict().items() if "q_proj" in k}
    data = merge.training_rows(seed.head(4))
    cfg = TrainParams(method="lora", lr=1e-3, epochs=2, batch_size=4, bf16=False, lora_r=4, lora_alpha=8)
    trained, history = train(model, tok, data, cfg, 1, 0, "chatml")
    assert history[-1]["loss"] < history[0]["loss"]
    save_model(trained, tok, tmp_path / "lora")
    reloaded, _ = load_model(tmp_path / "lora")
    after = reloaded.state_dict()
    assert set(after) == set(load_model(base)[0].state_dict())  # merged: no adapter weights remain
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.model
def test_training_resumes_from_its_checkpoint_to_the_same_weights(
    base: Path, seed: pl.DataFrame, tmp_path: Path, monkeypatch
) -> None:
    """A crash after the first checkpoint, then a rerun: the result equals an uninterrupted run's."""
    import torch

    from isara import train as T
    from isara.models import load_model
    from isara.resume import META

    torch.set_num_threads(2)
    data = merge.training_rows(seed.head(6))
    cfg = TrainParams(lr=1e-4, epochs=2, batch_size=2, bf16=False, checkpoint_every=2)  # 6 steps
    clean, clean_hist = T.train(load_model(base)[0], load_model(base)[1], data, cfg, 1, 0, "chatml")

    real_save, saves = T.save_checkpoint, []

    def crash_after_first_save(folder, model, opt, step, history):
        real_save(folder, model, opt, step, history)
        saves.append(step)
        if step == 4:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(T, "save_checkpoint", crash_after_first_save)
    model, tok = load_model(base)
    with pytest.raises(RuntimeError, match="simulated crash"):
        T.train(model, tok, data, cfg, 1, 0, "chatml", tmp_path / "ckpt")
    assert saves == [2, 4] and (tmp_path / "ckpt" / META).is_file()
    model, tok = load_model(base)  # a fresh process would start from the base weights again
    resumed, hist = T.train(model, tok, data, cfg, 1, 0, "chatml", tmp_path / "ckpt")
    assert saves == [2, 4]  # steps 5-6 ran after the resume; no checkpoint after the last step
    assert [h["loss"] for h in hist] == [h["loss"] for h in clean_hist]
    a, b = clean.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_batches_are_cut_where_padding_costs_more_than_a_batch() -> None:
    from isara.generate import plan_batches

    even = plan_batches([20] * 64, 32, 48)
    assert [len(b) for b in even] == [32, 32]
    lengths = [10] * 31 + [300]  # one long prompt would pad 31 short ones to 300 tokens
    plan = plan_batches(lengths, 32, 48)
    assert plan == [list(range(31)), [31]]
    mixed = [int(x) for x in np.random.default_rng(0).integers(5, 400, size=100)]
    plan = plan_batches(mixed, 16, 32)
    flat = [i for b in plan for i in b]
    assert sorted(flat) == list(range(100)) and all(1 <= len(b) <= 16 for b in plan)
    assert [mixed[i] for i in flat] == sorted(mixed)  # batches follow the length order
    assert plan_batches([], 8, 8) == []


class _FakeGenerate:
    """Stands in for generation: records each call and answers with text naming prompt and seed."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int]] = []

    def __call__(self, model, tokenizer, prompts, cfg, seed, fmt, desc, model_key=""):
        self.calls.append((list(prompts), seed))
        texts = [f"what about {schema.text_id(p, str(seed))} ?" for p in prompts]
        return texts, texts


class _WordTokenizer:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


def test_a_run_extending_another_reuses_its_rows_and_generates_only_the_rest(seed, monkeypatch) -> None:
    """The one-shot baseline's first half is it1's output: same draws, same prompts, read not generated."""
    from isara import label as label_mod
    from isara import propose as propose_mod
    from isara import resume
    from isara.errors import IsaraError

    fake = _FakeGenerate()
    monkeypatch.setattr(propose_mod, "generate", fake)
    monkeypatch.setattr(label_mod, "generate", fake)
    params, tok, pool = load_params(ROOT / "params.yaml"), _WordTokenizer(), merge.seed_pool(seed)
    fmt, c, s = params.model.chat_format, params.contexts, params.seed

    def propose(n: int, ref: str, done=None):
        return propose_mod.propose(None, tok, pool, params.propose, fmt, c, s, 1, n, ref, done)

    def label(rows, neighbors, dists, done=None):
        return label_mod.label(None, tok, rows, pool, neighbors, dists, params.label, fmt, s, 1, "m0", done)

    whole = propose(6, "m0")
    first = propose(4, "m0")
    fake.calls.clear()
    extended = propose(6, "m0", done=first)
    assert extended.head(4).equals(first)
    assert extended["context_ids"].to_list() == whole["context_ids"].to_list()
    (prompts, part_seed), *more = fake.calls
    assert not more and len(prompts) == 2 and part_seed == resume.part_seed(params.seed + 1, 4)
    assert part_seed != params.seed + 1  # the new rows do not replay the extended run's sampling
    with pytest.raises(IsaraError, match="another model"):
        propose(6, "m1", done=first)
    with pytest.raises(IsaraError, match="more than"):
        propose(3, "m0", done=first)

    ids = pool["sample_id"].to_list()
    neighbors = [ids[i : i + 3] for i in range(6)]
    dists = [[0.1, 0.2, 0.3]] * 6
    done = label(extended.head(4), neighbors[:4], dists[:4])
    fake.calls.clear()
    labeled = label(extended, neighbors, dists, done=done)
    assert labeled.head(4).equals(done) and len(fake.calls) == 1 and len(fake.calls[0][0]) == 2
    with pytest.raises(IsaraError, match="another model, pool or seed"):
        label(extended, neighbors[::-1], dists, done=done)
