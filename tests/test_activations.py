"""The collector (slimlib.activations) on tiny random transformers MoE models, offline.

Each supported architecture is built from a small config, saved with
``save_pretrained`` next to a byte-level tokenizer, loaded back through the same
``from_pretrained`` path a hub name would take, and collected.  Counts are
checked exactly: every layer sums to the non-pad token count, and the groups
equal an independent computation from ``output_router_logits``.
"""
from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import slimlib  # noqa: E402
from slimlib import cli  # noqa: E402
from slimlib.activations import byte_tokenizer, collect, find_routers, read_prompts  # noqa: E402
from slimlib.gating import sparse_moe_forward, topk_gating  # noqa: E402
from slimlib.skew import routing_summary  # noqa: E402

V = 260  # 256 bytes + pad + spare ids
PAD = 256

PROMPTS = ["The quick brown fox jumps over the lazy dog.",
           "def f(x):\n    return x + 1",
           "Mixture of experts",
           "a",
           "Edge caching of experts: which ones go where?",
           "0123456789" * 3,
           "héllo wörld ünïcode",
           "short"]


def _configs():
    T = transformers
    common = dict(vocab_size=V, pad_token_id=PAD, bos_token_id=None, eos_token_id=None)
    return {
        # expert_capacity=2 makes the Switch router drop tokens, so drops are exercised
        "switch": T.SwitchTransformersConfig(d_model=16, d_kv=8, d_ff=16, num_layers=2, num_decoder_layers=2,
                                             num_sparse_encoder_layers=1, num_sparse_decoder_layers=1,
                                             num_heads=2, num_experts=4, expert_capacity=2,
                                             decoder_start_token_id=PAD, **common),
        "mixtral": T.MixtralConfig(hidden_size=16, intermediate_size=16, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
                                   num_experts_per_tok=2, **common),
        "qwen2_moe": T.Qwen2MoeConfig(hidden_size=16, intermediate_size=16, moe_intermediate_size=8,
                                      shared_expert_intermediate_size=8, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=1, num_experts=6,
                                      num_experts_per_tok=2, **common),
        "qwen3_moe": T.Qwen3MoeConfig(hidden_size=16, intermediate_size=16, moe_intermediate_size=8,
                                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                      head_dim=8, num_experts=5, num_experts_per_tok=3, **common),
        "olmoe": T.OlmoeConfig(hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                               num_key_value_heads=1, num_experts=4, num_experts_per_tok=2, **common),
        # first layer dense: only layers 1 and 2 are MoE; grouped routing with a score-correction bias
        "deepseek_v3": T.DeepseekV3Config(hidden_size=16, intermediate_size=16, moe_intermediate_size=8,
                                          num_hidden_layers=3, first_k_dense_replace=1, num_attention_heads=2,
                                          num_key_value_heads=2, n_routed_experts=8, n_group=4, topk_group=2,
                                          num_experts_per_tok=2, q_lora_rank=None, kv_lora_rank=8,
                                          qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=4, **common),
    }


EXPECT = {"switch": (2, 4, 1), "mixtral": (2, 4, 2), "qwen2_moe": (2, 6, 2), "qwen3_moe": (2, 5, 3),
          "olmoe": (2, 4, 2), "deepseek_v3": (2, 8, 2)}


def _save(model_cls, cfg, path, seed):
    torch.manual_seed(seed)
    model = model_cls.from_config(cfg)
    if isinstance(cfg, transformers.DeepseekV3Config):
        # a non-zero correction bias makes routing differ from the top-k of the logits
        g = torch.Generator().manual_seed(seed)
        for name, buf in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buf.copy_(torch.randn(buf.shape, generator=g) * 0.3)
    model.save_pretrained(path)
    byte_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = {}
    for i, (arch, cfg) in enumerate(_configs().items()):
        cls = transformers.AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else transformers.AutoModelForCausalLM
        out[arch] = _save(cls, cfg, tmp_path_factory.mktemp(arch), seed=i)
    return out


def _independent(arch, path, prompts):
    """Group counts per layer (and Switch drops) from output_router_logits, computed without hooks."""
    model = transformers.AutoModel.from_pretrained(path).eval()
    tok = byte_tokenizer()
    enc = tok(prompts, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    flat = mask.reshape(-1).bool().numpy()
    cfg = model.config
    with torch.no_grad():
        if arch == "switch":
            dec = torch.full_like(ids, cfg.decoder_start_token_id)
            dec[:, 1:] = ids[:, :-1]
            out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=mask,
                        output_router_logits=True)
            logits = list(out.encoder_router_logits) + list(out.decoder_router_logits)
        else:
            out = model(input_ids=ids, attention_mask=mask, output_router_logits=True)
            logits = list(out.router_logits)
    layers, drops = [], []
    for lg in logits:
        if arch == "switch":
            choice = lg.argmax(-1)                                      # (B, S)
            onehot = torch.nn.functional.one_hot(choice, cfg.num_experts)
            kept = (torch.cumsum(onehot, dim=1) * onehot).sum(-1) <= cfg.expert_capacity
            drops.append(int((~kept).reshape(-1).numpy()[flat].sum()))
            idx = choice.reshape(-1, 1).numpy()
        elif arch == "deepseek_v3":
            lg = lg.reshape(-1, lg.shape[-1]).numpy().astype(np.float64)
            idx = _deepseek_route(lg, model, cfg)
        else:
            p = torch.softmax(lg.reshape(-1, lg.shape[-1]).float(), -1)
            idx = torch.topk(p, cfg.num_experts_per_tok, -1).indices.numpy()
        layers.append(Counter(map(tuple, np.sort(idx[flat], axis=1).tolist())))
    return layers, drops, int(flat.sum())


def _deepseek_route(logits, model, cfg):
    """DeepSeek-V3 routing re-implemented in numpy: sigmoid scores + bias, best topk_group groups, top-k."""
    biases = [b for n, b in model.named_buffers() if n.endswith("e_score_correction_bias")]
    bias = biases[_deepseek_route.layer % len(biases)].numpy().astype(np.float64)
    _deepseek_route.layer += 1
    s = 1 / (1 + np.exp(-logits)) + bias
    T, E = s.shape
    G = cfg.n_group
    grp = np.sort(s.reshape(T, G, E // G), axis=-1)[..., -2:].sum(-1)          # (T, G): sum of top-2 per group
    best = np.argsort(-grp, axis=1, kind="stable")[:, :cfg.topk_group]
    allowed = np.zeros((T, G), bool)
    np.put_along_axis(allowed, best, True, axis=1)
    s = np.where(np.repeat(allowed, E // G, axis=1), s, -np.inf)
    return np.argsort(-s, axis=1, kind="stable")[:, :cfg.num_experts_per_tok]


_deepseek_route.layer = 0


@pytest.mark.parametrize("arch", list(EXPECT))
def test_collect_exact_counts(saved, arch):
    path = saved[arch]
    stats = collect(path, PROMPTS, batch_size=3, progress=False)
    L, E, K = EXPECT[arch]
    assert (stats.num_layers, stats.num_experts, stats.top_k) == (L, E, K)
    n_tok = sum(len(p.encode()) for p in PROMPTS)
    assert stats.provenance["tokens"] == n_tok
    # every layer counts each non-pad token exactly once: sum = tokens x MoE layers
    assert sum(int(stats.counts(l).sum()) for l in range(L)) == n_tok * L
    _deepseek_route.layer = 0
    ref, drops, n_ref = _independent(arch, path, PROMPTS)
    assert n_ref == n_tok and len(ref) == L
    for l in range(L):
        got = Counter({tuple(g): int(c) for g, c in zip(stats.groups(l).tolist(), stats.counts(l))})
        assert got == ref[l], f"{arch} layer {l}"
    prov = stats.provenance
    assert prov["source"] == "measured" and prov["transformers"] == transformers.__version__
    assert prov["model"] == str(path) and "date" in prov and prov["num_prompts"] == len(PROMPTS)
    if arch == "switch":
        assert prov["dropped_tokens"] == drops and sum(drops) > 0   # capacity 2 over 3 prompts drops tokens
    else:
        assert "dropped_tokens" not in prov


def test_deepseek_bias_changes_routing(saved):
    """The hooked indices, not the top-k of the logits, define DeepSeek-V3 routing (the check above is not vacuous)."""
    model = transformers.AutoModel.from_pretrained(saved["deepseek_v3"]).eval()
    enc = byte_tokenizer()(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_router_logits=True)
    lg = out.router_logits[0].reshape(-1, 8)
    naive = torch.topk(lg, 2, -1).indices.sort(-1).values
    _deepseek_route.layer = 0
    exact = np.sort(_deepseek_route(lg.numpy().astype(np.float64), model, model.config), axis=1)
    assert (naive.numpy() != exact).any(axis=1).sum() > 0


def test_padding_and_batching_do_not_change_counts(saved):
    path = saved["mixtral"]
    a = collect(path, PROMPTS, batch_size=1, progress=False, date=None)
    b = collect(path, PROMPTS, batch_size=8, progress=False, date=None)
    for l in range(a.num_layers):
        np.testing.assert_array_equal(a.groups(l), b.groups(l))
        np.testing.assert_array_equal(a.counts(l), b.counts(l))


def test_max_tokens_and_max_length(saved):
    path = saved["olmoe"]
    s = collect(path, PROMPTS, batch_size=3, max_tokens=50, progress=False)
    assert s.provenance["tokens"] == 50
    assert all(int(s.counts(l).sum()) == 50 for l in range(s.num_layers))
    s = collect(path, PROMPTS, batch_size=4, max_length=5, progress=False)
    assert s.provenance["tokens"] == sum(min(5, len(p.encode())) for p in PROMPTS)


def test_model_object_and_name(saved):
    model = transformers.AutoModelForCausalLM.from_pretrained(saved["qwen3_moe"])
    model.train()
    s = collect(model, PROMPTS[:3], tokenizer="bytes", name="tiny-qwen3", progress=False)
    assert s.model == "tiny-qwen3" and s.top_k == 3
    assert model.training                     # the collector runs in eval mode and restores the flag
    assert s.provenance["architecture"] == "Qwen3MoeForCausalLM"
    with pytest.raises(ValueError, match="tokenizer"):
        collect(model, PROMPTS)


def test_prompt_files(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("one\n\n  \ntwo\n", encoding="utf-8")
    assert read_prompts(txt) == ["one", "two"]
    js = tmp_path / "p.jsonl"
    js.write_text(json.dumps({"question": "q1", "id": 1}) + "\n\n" + json.dumps({"question": "q2"}) + "\n")
    assert read_prompts(js, field="question") == ["q1", "q2"]
    with pytest.raises(ValueError, match="field: missing in p.jsonl line 1.*'text'"):
        read_prompts(js)
    empty = tmp_path / "e.txt"
    empty.write_text("\n \n")
    with pytest.raises(ValueError, match="no prompts"):
        read_prompts(empty)
    with pytest.raises(ValueError, match="no such file"):
        read_prompts(tmp_path / "missing.txt")


def test_dense_model_rejected(tmp_path):
    cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, pad_token_id=PAD)
    _save(transformers.AutoModelForCausalLM, cfg, tmp_path / "dense", 0)
    with pytest.raises(ValueError, match="no MoE layer"):
        collect(tmp_path / "dense", PROMPTS, progress=False)


def test_bad_sizes(saved):
    with pytest.raises(ValueError, match="batch_size"):
        collect(saved["mixtral"], PROMPTS, batch_size=0)
    with pytest.raises(ValueError, match="prompts"):
        collect(saved["mixtral"], ["", "  "])


def test_cli_collect(saved, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"q": p}) + "\n" for p in PROMPTS), encoding="utf-8")
    out = tmp_path / "stats.json"
    rc = cli.main(["collect", "--model", str(saved["switch"]), "--prompts", str(prompts), "--field", "q",
                   "--out", str(out), "--batch-size", "3", "--max-tokens", "100", "--name", "tiny-switch",
                   "--tokenizer", "bytes"])
    assert rc == 0
    stats = slimlib.load(out)
    assert stats.provenance["tokens"] == 100 and stats.num_layers == 2 and stats.top_k == 1
    assert stats.model == "tiny-switch" and stats.provenance["prompts"] == str(prompts)
    assert "dropped" in capsys.readouterr().out
    # errors: one clear message, exit status 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["collect", "--model", str(saved["switch"]), "--prompts", str(prompts), "--out", str(out),
                  "--force"])
    assert exc.value.code == 2
    assert "field" in capsys.readouterr().err


def test_topk_gating_matches_transformers_router():
    torch.manual_seed(0)
    cfg = transformers.MixtralConfig(hidden_size=16, num_local_experts=6, num_experts_per_tok=2)
    cfg._experts_implementation = "eager"
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
    block = MixtralSparseMoeBlock(cfg).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(40, 16)
    with torch.no_grad():
        ref_logits, ref_w, ref_idx = block.gate(x)
        logits, w, idx = topk_gating(x, block.gate.weight, 2)
        assert torch.equal(idx, ref_idx)
        torch.testing.assert_close(w, ref_w)
        ex = block.experts

        def expert(e):
            return lambda h: torch.nn.functional.linear(
                torch.nn.functional.silu((g := torch.nn.functional.linear(h, ex.gate_up_proj[e]).chunk(2, -1))[0])
                * g[1], ex.down_proj[e])
        y, _ = sparse_moe_forward(x, block.gate.weight, [expert(e) for e in range(6)], 2)
        torch.testing.assert_close(y, block(x[None])[0], rtol=1e-4, atol=1e-4)


def test_routing_summary_hand_values():
    # one layer, E=4, K=2: uniform over all 6 pairs -> balanced; a single pair -> extreme
    from itertools import combinations
    groups = list(combinations(range(4), 2))
    uni = slimlib.ActivationStats(4, 2, [groups], counts=[[1] * 6])
    r = routing_summary(uni)
    assert r["entropy"][0] == pytest.approx(1.0) and r["group_entropy"][0] == pytest.approx(1.0)
    assert r["top_expert"][0] == pytest.approx(0.5) and r["top_group"][0] == pytest.approx(1 / 6)
    assert r["pair_lift"][0] == pytest.approx(1.0)
    one = slimlib.ActivationStats(4, 2, [[(1, 3)], [(0, 1), (2, 3)]], counts=[[5], [1, 1]])
    r = routing_summary(one)
    assert r["entropy"][0] == pytest.approx(math.log(2) / math.log(4))
    assert r["top_expert"][0] == 1.0 and r["top_group"].tolist() == [1.0, 0.5]
    # pair (1,3): P=1, p1=p3=1 -> lift 1 / (1*4/(2*3)) = 1.5
    assert r["pair_lift"][0] == pytest.approx(1.5)
    assert r["layer_tv"] == pytest.approx(0.5)   # loads (0,.5,0,.5) vs (.25,.25,.25,.25)


def test_find_routers_order(saved):
    model = transformers.AutoModel.from_pretrained(saved["switch"])
    names = [n for n, _, _ in find_routers(model)]
    assert names[0].startswith("encoder") and names[1].startswith("decoder")


def test_collect_records_the_routing_trace(saved, tmp_path):
    """trace=True: the per-token trace counts exactly the groups of the statistics, prompt by prompt."""
    from slimlib.trace import RoutingTrace, load_trace
    stats, trace = collect(saved["mixtral"], PROMPTS, batch_size=3, progress=False, trace=True)
    lengths = [len(p.encode()) for p in PROMPTS]
    assert isinstance(trace, RoutingTrace)
    assert trace.experts.shape == (sum(lengths), 2, 2) and trace.sequence_lengths.tolist() == lengths
    assert trace.to_stats().to_dict()["layers"] == stats.to_dict()["layers"]
    # the first token of the second prompt routes as a batch of that prompt alone does
    _, alone = collect(saved["mixtral"], PROMPTS[1:2], progress=False, trace=True)
    np.testing.assert_array_equal(np.sort(alone.experts, axis=2),
                                  np.sort(trace.experts[lengths[0]:lengths[0] + lengths[1]], axis=2))
    path = slimlib.save(trace, tmp_path / "t.json")
    assert load_trace(path) == trace
    # plain collect still returns only the statistics
    assert isinstance(collect(saved["mixtral"], PROMPTS[:2], progress=False), slimlib.ActivationStats)
