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
    # allocation: union (the default) draws what it drew before stratified existed
    assert a == [[5, 6, 7], [2, 6, 7], [2, 7, 9], [1, 6, 7], [2, 3, 6]]


def _pool_of_sets(sizes: dict[int, int]) -> pl.DataFrame:
    """A pool P(k-1): `sizes[j]` pairs of iteration j (0 = the seed), in sample_id order as propose sorts it."""
    rows = [(f"{j}-{i:03d}", j) for j, n in sizes.items() for i in range(n)]
    return pl.DataFrame({"sample_id": [r[0] for r in rows], "iteration": [r[1] for r in rows]}).sort("sample_id")


def test_stratified_allocation_gives_each_generated_set_one_example_and_the_seed_the_rest() -> None:
    from isara.icl import quotas
    from isara.propose import draw_stratified

    assert quotas([0, 1, 2], 8) == {0: 6, 1: 1, 2: 1}  # the authors' k=3 with 8 contexts
    assert quotas([0], 8) == {0: 8}  # k=1: the pool is the seed
    assert quotas([0, 1, 2, 3], 3) == {0: 1, 2: 1, 3: 1}  # too few slots: the newest sets keep theirs
    assert quotas([0, 1, 2], 1) == {0: 1}
    pool = _pool_of_sets({0: 20, 1: 6, 2: 5})
    draws = draw_stratified(pool, 50, 8, seed=3)
    sets = pool["iteration"].to_list()
    for rows in draws:
        assert [sets[r] for r in rows] == [0] * 6 + [1, 2]  # the seed's first, the newest set's last
        assert len(set(rows)) == 8
    assert draws == draw_stratified(pool, 50, 8, seed=3) and draws != draw_stratified(pool, 50, 8, seed=4)
    assert draw_stratified(pool, 20, 8, seed=3) == draws[:20]  # a run extending another draws its prompts first
    assert len({r for rows in draws for r in rows if sets[r] == 1}) == 6  # every D1 pair gets its turn
    seed_only = _pool_of_sets({0: 10})  # k=1 (and the one-shot run): the union's own draws
    assert draw_stratified(seed_only, 5, 3, seed=7) == draw_contexts(seed_only, 5, 3, seed=7)


def test_stratified_neighbours_are_each_sets_nearest_in_distance_order(tmp_path: Path) -> None:
    from isara.label import nearest_per_set, retrieve

    sets = {"s1": 0, "s2": 0, "s3": 0, "g1": 1, "g2": 1, "h1": 2}
    ids, dists = ["g1", "s1", "g2", "h1", "s2", "s3"], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert nearest_per_set(ids, dists, sets, {0: 2, 1: 1, 2: 1}) == (["g1", "s1", "h1", "s2"], [0.1, 0.2, 0.4, 0.5])

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    pool = _pool_of_sets({0: 30, 1: 6, 2: 4})
    ids_map = index.build(vectors, pool["sample_id"].to_list(), IndexParams(), 0, tmp_path / "i.ann")
    queries = rng.normal(size=(5, 8)).astype(np.float32)
    union = index.query(tmp_path / "i.ann", ids_map, 8, "angular", queries, 4)
    every = index.query(tmp_path / "i.ann", ids_map, 8, "angular", queries, 40)
    assert [u[:4] for u in every[0]] == union[0]  # the whole pool, nearest first: the union's n lead it
    by_set = dict(zip(pool["sample_id"], pool["iteration"], strict=True))
    for ns, ds in zip(*every, strict=True):
        kept, kd = nearest_per_set(ns, ds, by_set, {0: 6, 1: 1, 2: 1})
        assert [by_set[i] for i in kept].count(0) == 6 and kd == sorted(kd)
        assert kept[[by_set[i] for i in kept].index(1)] == next(i for i in ns if by_set[i] == 1)

    questions = [f"question {i}" for i in range(5)]
    embedded = [v.tolist() for v in queries]
    cache = pl.DataFrame({"text_id": list(map(schema.text_id, questions)), "model": ["m"] * 5, "embedding": embedded})
    cache = schema.conform(cache, schema.EMBEDDINGS, "cache")
    assert retrieve(questions, cache, "m", tmp_path / "i.ann", ids_map, "angular", 4) == union  # allocation: union
    got = retrieve(questions, cache, "m", tmp_path / "i.ann", ids_map, "angular", 8, by_set)
    want = [nearest_per_set(ns, ds, by_set, {0: 6, 1: 1, 2: 1}) for ns, ds in zip(*every, strict=True)]
    assert got == ([w[0] for w in want], [w[1] for w in want])


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
def test_the_authors_beam_sample_with_their_length_penalties_runs_seeded(base: Path, seed: pl.DataFrame) -> None:
    """do_sample with num_beams > 1 (transformers 5 still samples beams), length_penalty and the decay."""
    import torch

    from isara.generate import generate
    from isara.models import load_model

    torch.set_num_threads(2)
    model, tok = load_model(base)
    prompts = [answer_prompt([], q, "chatml") for q in seed["question"].head(2)]
    cfg = GenerateParams(
        max_new_tokens=20, batch_size=2, do_sample=True, num_beams=2, repetition_penalty=1.05,
        no_repeat_ngram_size=10, length_penalty=2.0, exponential_decay_length_penalty=(15, 1.6),
    )  # fmt: skip
    raw, texts = generate(model, tok, prompts, cfg, 0, "chatml", "test")
    assert (raw, texts) == generate(model, tok, prompts, cfg, 0, "chatml", "test")
    assert all(t.strip() for t in texts)


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


# The default recipe (one batch a step, constant rate, torch's betas), then the authors': 2 batches a
# step, cosine after 1 warm-up step, betas (0.9, 0.95). 6 pairs in batches of 2 over 2 epochs.
RECIPES = [
    (TrainParams(lr=1e-4, epochs=2, batch_size=2, bf16=False, checkpoint_every=2), 4, [2, 4]),  # 6 steps
    (
        TrainParams(
            lr=1e-4, epochs=2, batch_size=2, bf16=False, checkpoint_every=1,
            grad_accum=2, schedule="cosine", warmup_steps=1, adam_betas=(0.9, 0.95),
        ),
        2,
        [1, 2],
    ),  # 3 steps
]  # fmt: skip


@pytest.mark.model
@pytest.mark.parametrize(("cfg", "crash_at", "saved"), RECIPES, ids=["default", "authors"])
def test_training_resumes_from_its_checkpoint_to_the_same_weights(
    small: Path, seed: pl.DataFrame, tmp_path: Path, monkeypatch, cfg: TrainParams, crash_at: int, saved: list[int]
) -> None:
    """A crash after a checkpoint, then a rerun: the result equals an uninterrupted run's."""
    import torch

    from isara import train as T
    from isara.models import load_model
    from isara.resume import META

    torch.set_num_threads(2)
    data = merge.training_rows(seed.head(6))
    clean, clean_hist = T.train(load_model(small)[0], load_model(small)[1], data, cfg, 1, 0, "chatml")

    real_save, saves = T.save_checkpoint, []

    def crash_after_a_save(folder, model, opt, step, history, sched=None):
        real_save(folder, model, opt, step, history, sched)
        saves.append(step)
        if step == crash_at:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(T, "save_checkpoint", crash_after_a_save)
    model, tok = load_model(small)
    with pytest.raises(RuntimeError, match="simulated crash"):
        T.train(model, tok, data, cfg, 1, 0, "chatml", tmp_path / "ckpt")
    assert saves == saved and (tmp_path / "ckpt" / META).is_file()
    model, tok = load_model(small)  # a fresh process would start from the base weights again
    resumed, hist = T.train(model, tok, data, cfg, 1, 0, "chatml", tmp_path / "ckpt")
    assert saves == saved  # the last steps ran after the resume; no checkpoint after the last step
    assert len(hist) == T.plan_steps(6, cfg) and [h["loss"] for h in hist] == [h["loss"] for h in clean_hist]
    a, b = clean.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.model
def test_the_default_recipe_makes_the_updates_of_the_plain_loop(small: Path, seed: pl.DataFrame) -> None:
    """One batch a step at a constant rate: the AdamW calls the training loop made before the options."""
    import torch

    from isara.loss import collate, step_loss
    from isara.models import load_model
    from isara.train import batches, tokenize_rows, train

    torch.set_num_threads(2)
    data, cfg = merge.training_rows(seed.head(6)), TrainParams(lr=1e-4, epochs=2, batch_size=3, bf16=False)
    trained, history = train(*load_model(small), data, cfg, 1, 0, "chatml")

    model, tok = load_model(small)
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    examples = tokenize_rows(tok, data, "chatml", cfg.max_length)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0, fused=True)
    losses = []
    for idx in [b for _ in range(2) for b in batches([len(e[0]) for e in examples], 3, rng)]:
        loss = step_loss(model, *collate([examples[i] for i in idx], tok.pad_token_id))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(round(loss.item(), 6))
    assert [h["loss"] for h in history] == losses
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in trained.state_dict().items())


@pytest.mark.model
def test_accumulated_batches_step_as_one_batch_of_all_their_rows(small: Path, seed: pl.DataFrame) -> None:
    import torch

    from isara.models import load_model
    from isara.train import _step, tokenize_rows

    class Keep:
        """An optimizer that leaves the gradients for the test to read."""

        def zero_grad(self, set_to_none: bool = True) -> None:
            model.zero_grad(set_to_none=set_to_none)

        def step(self) -> None:
            pass

    torch.set_num_threads(2)
    model, tok = load_model(small)
    data = merge.training_rows(seed.head(5)).with_columns(pl.Series("weight", [1.0, 0.5, 1.0, 2.0, 1.0]))
    examples = tokenize_rows(tok, data, "chatml", 256)
    two = _step(model, Keep(), examples, [np.array([0, 1]), np.array([2, 3, 4])], tok.pad_token_id, False)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    one = _step(model, Keep(), examples, [np.arange(5)], tok.pad_token_id, False)
    assert two[0] == pytest.approx(one[0], rel=1e-5) and two[1] == one[1]
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.model
def test_the_cosine_schedule_is_the_one_transformers_gives() -> None:
    import torch
    from transformers import get_cosine_schedule_with_warmup

    from isara.train import scheduler

    weights = [torch.nn.Parameter(torch.zeros(1))]
    ours = scheduler(torch.optim.AdamW(weights, lr=2e-5), TrainParams(schedule="cosine", warmup_steps=3), 17)
    theirs = get_cosine_schedule_with_warmup(torch.optim.AdamW(weights, lr=2e-5), 3, 17)
    for _ in range(17):
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), abs=1e-12)
        ours.optimizer.step(), theirs.optimizer.step(), ours.step(), theirs.step()
    assert scheduler(torch.optim.AdamW(weights, lr=2e-5), TrainParams(), 17) is None  # the default: no scheduler


@pytest.mark.model
def test_the_matched_control_takes_the_optimizer_steps_of_its_round(small: Path, seed: pl.DataFrame) -> None:
    """sft_matched@itK trains D0 for as many steps as train@itK takes on its own, larger set."""
    import torch

    from isara.models import load_model
    from isara.train import planned_steps, train

    torch.set_num_threads(2)
    d0 = merge.training_rows(seed.head(3))
    isara_rows = merge.training_rows(seed.head(10)).with_columns(pl.Series("weight", [1.0] * 9 + [0.0]))
    cfg = TrainParams(lr=1e-4, epochs=1, batch_size=2, grad_accum=2, schedule="cosine", bf16=False)
    model, tok = load_model(small)
    steps = planned_steps(tok, isara_rows, cfg, "chatml")
    assert steps == 3  # 9 rows with a weight: 5 batches, 2 a step
    _, isara_hist = train(model, tok, isara_rows, cfg, 2, 0, "chatml")
    _, matched_hist = train(*load_model(small), d0, cfg, 2, 0, "chatml", steps=steps)
    assert len(isara_hist) == len(matched_hist) == steps
    assert [h["epoch"] for h in matched_hist] == [1, 2, 3]  # 3 pairs, 2 batches an epoch, 2 batches a step


@pytest.mark.model
def test_bf16_is_fp32_where_the_cpu_would_emulate_it(small: Path, seed: pl.DataFrame, monkeypatch, caplog) -> None:
    """train.bf16 on a CPU without AVX512-BF16 or AMX: the same updates as bf16: false, and one warning
    naming the param; where the CPU has bf16, the autocast runs and the losses move."""
    import torch

    from isara import models
    from isara.models import load_model
    from isara.train import train

    torch.set_num_threads(2)
    data = merge.training_rows(seed.head(4))
    cfg = TrainParams(lr=1e-4, epochs=1, batch_size=2, checkpoint_every=0)

    def losses(native: bool, bf16: bool) -> list[float]:
        models.use_bf16.cache_clear()
        monkeypatch.setattr(models, "native_bf16", lambda device_type="cpu": native)
        _, hist = train(*load_model(small), data, cfg.model_copy(update={"bf16": bf16}), 1, 0, "chatml")
        return [h["loss"] for h in hist]

    fp32 = losses(native=False, bf16=False)
    with caplog.at_level("WARNING"):
        assert losses(native=False, bf16=True) == fp32
    assert sum("train.bf16: this CPU has no native bf16" in r.getMessage() for r in caplog.records) == 1
    assert losses(native=True, bf16=True) != fp32  # autocast on: bf16 rounding shows in the loss
    models.use_bf16.cache_clear()
    assert models.use_bf16(False, "cpu", "train.bf16") is False


@pytest.mark.model
def test_generation_follows_bf16_each_call_and_fp32_is_fp32_again(small: Path, seed: pl.DataFrame, monkeypatch) -> None:
    """`bf16: true` generates with bf16 weights where the hardware has bf16; a later fp32 call on the same
    model generates what a model never converted generates (the conversion does not stick)."""
    import torch

    from isara import models
    from isara.generate import generate
    from isara.models import load_model

    torch.set_num_threads(2)
    models.use_bf16.cache_clear()
    monkeypatch.setattr(models, "native_bf16", lambda device_type="cpu": True)
    prompts = [answer_prompt([], q, "chatml") for q in seed["question"].head(4)]
    fp32, bf16 = (
        GenerateParams(max_new_tokens=12, batch_size=2, bf16=False),
        GenerateParams(max_new_tokens=12, batch_size=2),
    )
    fresh, tok = load_model(small)
    expected, _ = generate(fresh, tok, prompts, fp32, 0, "chatml", "test")
    model, _ = load_model(small)
    generate(model, tok, prompts, bf16, 0, "chatml", "test")
    assert model.dtype == torch.bfloat16  # the default: bf16 weights where native
    again, _ = generate(model, tok, prompts, fp32, 0, "chatml", "test")
    assert model.dtype == torch.float32 and again == expected
    models.use_bf16.cache_clear()


def test_a_round_plans_its_optimizer_steps_and_the_matched_control_takes_as_many() -> None:
    from isara.train import batches, plan, plan_steps

    rng = np.random.default_rng(0)
    for n, epochs, size, accum in [(64, 2, 8, 1), (70, 1, 4, 8), (544, 1, 4, 8), (5, 3, 2, 4)]:
        cfg = TrainParams(epochs=epochs, batch_size=size, grad_accum=accum)
        lengths = [int(x) for x in rng.integers(5, 50, size=n)]
        steps = plan(lengths, cfg, np.random.default_rng(1))
        assert len(steps) == plan_steps(n, cfg)
        assert all(len(g) == accum for g in steps[:-1]) and 1 <= len(steps[-1]) <= accum  # the last takes the rest
        assert (
            steps[-1][-1][1] == epochs and sorted(np.concatenate([b for g in steps for b, _ in g])).count(0) == epochs
        )
        # the control on a seed of 12 pairs: as many steps, from as many shuffled epochs as it takes
        matched = plan(lengths[:12], cfg, np.random.default_rng(1), steps=len(steps))
        assert len(matched) == len(steps) and all(len(g) == accum for g in matched)
    # the default plan is the epochs' shuffles one after the other, one batch a step, as it always was
    lengths = [int(x) for x in rng.integers(5, 50, size=10)]
    shuffle = np.random.default_rng(5)
    before = [b for _ in range(2) for b in batches(lengths, 3, shuffle)]
    now = plan(lengths, TrainParams(epochs=2, batch_size=3), np.random.default_rng(5))
    assert [[b.tolist() for b, _ in g] for g in now] == [[b.tolist()] for b in before]
    assert [e for g in now for _, e in g] == [1] * 4 + [2] * 4
    assert plan([], TrainParams(), rng, steps=3) == []


def test_learning_rate_schedules_warm_up_then_hold_or_decay_to_zero() -> None:
    from isara.train import schedule_factor

    cosine = [schedule_factor(s, "cosine", 0, 10) for s in range(11)]
    assert cosine[0] == 1.0 and cosine[5] == pytest.approx(0.5) and cosine[10] == 0.0 and cosine == sorted(cosine)[::-1]
    assert [schedule_factor(s, "cosine", 2, 10) for s in range(3)] == [0.0, 0.5, 1.0]  # from 0, as transformers
    assert [schedule_factor(s, "constant", 2, 10) for s in (0, 1, 2, 9)] == [0.0, 0.5, 1.0, 1.0]


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
