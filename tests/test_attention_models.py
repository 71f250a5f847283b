"""Attention specialization on real model code: transformers models built from tiny configs.

For each model and each attention implementation it supports, the number of kiln.attention ops
must equal the number of attention layers exactly, nothing may be left unmatched, and the
compiled model must match eager.
"""

import pytest
import torch
import transformers as tf

import kiln

from compare import assert_close


LAYERS = 2
SEQ = 16


def _gpt2(impl):
    return tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=LAYERS, n_embd=64, n_head=4, vocab_size=100,
                                            n_positions=64, attn_implementation=impl))


def _bert(impl):
    return tf.BertModel(tf.BertConfig(num_hidden_layers=LAYERS, hidden_size=64,
                                      intermediate_size=128, num_attention_heads=4,
                                      vocab_size=100, max_position_embeddings=64,
                                      attn_implementation=impl))


def _distilbert(impl):
    return tf.DistilBertModel(tf.DistilBertConfig(n_layers=LAYERS, dim=64, hidden_dim=128,
                                                  n_heads=4, vocab_size=100,
                                                  max_position_embeddings=64,
                                                  attn_implementation=impl))


def _llama(impl):
    return tf.LlamaForCausalLM(tf.LlamaConfig(num_hidden_layers=LAYERS, hidden_size=64,
                                              intermediate_size=128, num_attention_heads=4,
                                              num_key_value_heads=2, vocab_size=100,
                                              max_position_embeddings=64,
                                              attn_implementation=impl))


def _t5_encoder(impl):
    return tf.T5EncoderModel(tf.T5Config(num_layers=LAYERS, d_model=64, d_ff=128, num_heads=4,
                                         d_kv=16, vocab_size=100, attn_implementation=impl))


def _vit(impl):
    return tf.ViTModel(tf.ViTConfig(num_hidden_layers=LAYERS, hidden_size=64,
                                    intermediate_size=128, num_attention_heads=4, image_size=32,
                                    patch_size=8, attn_implementation=impl))


MODELS = {"gpt2": _gpt2, "bert": _bert, "distilbert": _distilbert, "llama": _llama,
          "t5-encoder": _t5_encoder, "vit": _vit}
# What each model's attention becomes (besides scale): causal decoders lose their mask.
EXPECTED_CAUSAL = {"gpt2": True, "llama": True, "bert": False, "distilbert": False,
                   "t5-encoder": False, "vit": False}


def _build(name, impl):
    torch.manual_seed(0)
    model = MODELS[name](impl).eval()
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    if name == "vit":
        inputs = (torch.randn(1, 3, 32, 32),)
    else:
        inputs = (torch.randint(0, 100, (1, SEQ), generator=torch.Generator().manual_seed(1)),)
    return model, inputs


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_attention_layer_is_raised_and_matches_eager(name, impl):
    model, inputs = _build(name, impl)
    compiled = kiln.compile_model(model, inputs, target="cpu")
    attention = [r for r in compiled.report.rewrites if r.kind.startswith("attention/")]
    assert len(attention) == LAYERS, compiled.report
    assert compiled.report.unmatched_softmax == []
    for rewrite in attention:
        assert ("causal" in rewrite.detail) == EXPECTED_CAUSAL[name], rewrite
        assert "/transformers/" in rewrite.location and ".py:" in rewrite.location, rewrite
    if name == "llama":
        assert all("grouped kv" in r.detail for r in attention)
    got = kiln.load(compiled.vmfb)(*inputs)
    got = got[0] if isinstance(got, tuple) else got
    with torch.no_grad():
        expected = model(*inputs)[0]
    assert_close(got, expected)
