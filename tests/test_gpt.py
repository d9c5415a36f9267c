"""GPT: original key names and shapes, fixture logits, KV cache == full forward, mask, optimizer groups."""
import json

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from helpers import COMPAT, expected, fixture_gpt
from taming.transformer.gpt import GPT

pytestmark = pytest.mark.usefixtures("one_thread")


TRANSFORMER_CONFIGS = ["faceshq_transformer", "drin_transformer", "coco_scene_images_transformer",
                       "open_images_scene_images_transformer"]


@pytest.mark.parametrize("name", TRANSFORMER_CONFIGS)
def test_keys_and_shapes_of_original_configs(name):
    params = OmegaConf.load(COMPAT / "configs" / f"{name}.yaml").model.params.transformer_config.params
    with torch.device("meta"):
        gpt = GPT(**OmegaConf.to_container(params))
    got = {f"transformer.{k}": list(v.shape) for k, v in gpt.state_dict().items()}
    keys = json.loads((COMPAT / "keys" / f"{name}.json").read_text())["keys"]
    want = {k: v for k, v in keys.items() if k.startswith("transformer.")}
    assert got == want
    assert list(got) == list(want)  # same module order as the original


def test_seg_fixture_logits():
    gpt, e = fixture_gpt("transformer_seg"), expected("transformer_seg")
    c, z = e["c_indices"], e["z_indices"]  # (2, 64) each
    with torch.no_grad():
        logits, _ = gpt(torch.cat([c, z[:, :-1]], dim=1))
    torch.testing.assert_close(logits[:, c.shape[1] - 1:], e["logits"], rtol=1e-5, atol=1e-5)


def test_uncond_fixture_logits_and_loss():
    gpt, e = fixture_gpt("transformer_uncond"), expected("transformer_uncond")
    z = e["target"]  # (2, 64); the SOS token is the conditioning
    with torch.no_grad():
        logits, loss = gpt(torch.cat([e["sos"], z[:, :-1]], dim=1), targets=z)
    torch.testing.assert_close(logits, e["logits"], rtol=1e-5, atol=1e-5)
    want = F.cross_entropy(e["logits"].reshape(-1, 64), z.reshape(-1))
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-5)


def tiny(**kw) -> GPT:
    args = dict(vocab_size=37, block_size=24, n_layer=2, n_head=2, n_embd=16)
    args.update(kw)
    return GPT(**args).eval()


@pytest.mark.parametrize("n_unmasked", [0, 5])
def test_cache_chunks_equal_full_forward(n_unmasked):
    gpt = tiny(n_unmasked=n_unmasked)
    idx = torch.randint(0, 37, (3, 20))
    with torch.no_grad():
        full, _ = gpt(idx)  # (3, 20, 37)
        cache = gpt.new_cache(3, 20)
        pieces, pos = [], 0
        for n in (6, 1, 1, 5, 1, 6):  # a prefill covering the unmasked prefix, then mixed chunks
            pieces.append(gpt(idx[:, pos:pos + n], cache=cache, pos=pos)[0])
            pos += n
        last = gpt(idx[:, 19:20], cache=gpt.new_cache(3, 20), pos=19)[0]  # unrelated cache: differs
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(last[:, 0], full[:, 19], atol=1e-4)


def test_last_only_and_embeddings_prefix():
    gpt = tiny()
    idx = torch.randint(0, 37, (2, 10))
    with torch.no_grad():
        full, _ = gpt(idx)
        # prepended embeddings are the original's way to feed a conditioning: the same as its tokens
        via_emb, _ = gpt(idx[:, 4:], embeddings=gpt.tok_emb(idx[:, :4]))
        cache = gpt.new_cache(2, 10)
        last = gpt(idx[:, :7], cache=cache, logits_from=6)[0]  # (2, 1, V): the last position's only
        rest = gpt(idx[:, 7:], cache=cache, pos=7)[0]
    torch.testing.assert_close(via_emb, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last[:, 0], full[:, 6], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rest, full[:, 7:], rtol=1e-5, atol=1e-5)  # the cache holds all 7 positions


@pytest.mark.parametrize("n_unmasked", [0, 6])
def test_logits_from_equals_sliced_full_logits_and_gradients(n_unmasked):
    """The transformer stage asks for the image codes' logits only; the shortened last block must
    give the same logits, loss and gradients as the full sequence sliced."""
    idx = torch.randint(0, 37, (3, 20))
    targets = torch.randint(0, 37, (3, 12))
    grads = []
    for logits_from in (0, 8):
        torch.manual_seed(0)  # the same weights both times
        gpt = tiny(n_unmasked=n_unmasked)
        logits, _ = gpt(idx, logits_from=logits_from)
        logits = logits[:, 8 - logits_from:]  # (3, 12, V) either way
        loss = F.cross_entropy(logits.reshape(-1, 37), targets.reshape(-1))
        loss.backward()
        grads.append((logits.detach(), {n: p.grad.clone() for n, p in gpt.named_parameters()}))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-5, atol=1e-6)
    for name, g in grads[0][1].items():
        torch.testing.assert_close(grads[1][1][name], g, rtol=1e-4, atol=1e-6, msg=name)
    with pytest.raises(ValueError, match="logits_from=20"):
        tiny()(idx, logits_from=20)


def test_unmasked_prefix_sees_itself_fully():
    for n_unmasked, sees_future in ((0, False), (4, True)):
        gpt = tiny(n_unmasked=n_unmasked)
        assert gpt.blocks[1].attn.mask[0, 0, :4, :4].sum() == (16 if sees_future else 10)
        idx = torch.randint(0, 37, (1, 8))
        changed = idx.clone()
        changed[0, 3] = (idx[0, 3] + 1) % 37
        later = idx.clone()
        later[0, 6] = (idx[0, 6] + 1) % 37
        with torch.no_grad():
            a, b, c = gpt(idx)[0], gpt(changed)[0], gpt(later)[0]
        assert (not torch.allclose(a[0, 0], b[0, 0])) == sees_future  # position 0 sees position 3?
        torch.testing.assert_close(a[0, :6], c[0, :6])  # after the prefix the mask is causal


def test_too_long_inputs_raise():
    gpt = tiny(block_size=8)
    with pytest.raises(ValueError, match="block_size is 8"):
        gpt(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="exceeds block_size 8"):
        gpt.new_cache(1, 9)
    with pytest.raises(ValueError, match="do not fit a cache of 4"):
        gpt(torch.zeros(1, 5, dtype=torch.long), cache=gpt.new_cache(1, 4))


def test_init_as_original():
    gpt = GPT(vocab_size=512, block_size=64, n_layer=2, n_head=4, n_embd=128)
    w = gpt.blocks[0].mlp[0].weight
    assert abs(w.std().item() - 0.02) < 1e-3 and gpt.blocks[0].mlp[0].bias.abs().max() == 0
    assert abs(gpt.tok_emb.weight.std().item() - 0.02) < 1e-3
    assert gpt.pos_emb.abs().max() == 0
    assert torch.equal(gpt.ln_f.weight, torch.ones(128)) and gpt.head.bias is None


def test_param_groups_decay_linear_weights_only():
    gpt = tiny()
    decay, no_decay = gpt.param_groups(0.01)
    names = {id(p): n for n, p in gpt.named_parameters()}
    decayed = sorted(names[id(p)] for p in decay["params"])
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert len(decayed) == 2 * 6 + 1 and all(n.endswith(".weight") for n in decayed)
    assert "head.weight" in decayed and "blocks.0.attn.query.weight" in decayed
    assert not any(n.startswith(("tok_emb", "pos_emb", "ln_f")) or ".ln" in n for n in decayed)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(gpt.parameters()))
    opt = gpt.configure_optimizer(lr=1e-3)
    assert opt.defaults["fused"] is True  # torch's fused AdamW exists for CPU
    gpt.train()
    idx = torch.randint(0, 37, (2, 12))
    _, loss = gpt(idx[:, :-1], targets=idx[:, 1:])
    loss.backward()
    before = gpt.head.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, gpt.head.weight)


def test_sampling_between_training_steps_leaves_training_unchanged():
    from taming.sampling import generate

    models = [tiny(), tiny()]
    models[1].load_state_dict(models[0].state_dict())
    opts = [m.configure_optimizer(lr=1e-2) for m in models]
    idx = torch.randint(0, 37, (3, 12))
    for step in range(3):
        if step == 1:  # e.g. image logging samples with a small batch (decode layout inside)
            generate(models[1], idx[:, :4], 5, greedy=True)
            assert models[1].head.weight.is_contiguous() and not models[1].head.weight.is_inference()
        for model, opt in zip(models, opts):
            model.train()
            _, loss = model(idx[:, :-1], targets=idx[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)
