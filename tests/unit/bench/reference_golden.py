#!/opt/mgca-venv/bin/python
"""Checks the PyTorch baseline of bench/step (bench/reference/mgca_official.py)
against the official MGCA implementation's golden vectors, so that the
benchmark compares our step with the official computation and not another one.

  reference_golden.py GOLDEN_DIR REPO_DIR

1. The loss code (ITA, CTA with the official quirks, CPA with Sinkhorn) on the
   golden inputs of case b (ViT branch) and case c (ResNet branch): every loss part, the Sinkhorn codes
   and the gradients w.r.t. the raw features and the prototypes.
2. The subword→word aggregation, both the official loop and the vectorized
   form, on the golden text case: word features, word weights, pad mask.
Tolerances: fp32 files, relative 1e-5 of each tensor's largest magnitude
(losses 1e-5 relative); float64 files 1e-10.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

golden, repo = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(repo, "bench", "reference"))
import st_io  # noqa: E402
from mgca_official import MGCA, BertEncoder  # noqa: E402

failures = []


def close(name, got, want, rtol):
    got = got.detach().double().numpy() if torch.is_tensor(got) else np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64).reshape(got.shape)
    scale = max(np.abs(want).max(), 1e-30)
    err = np.abs(got - want).max() / scale
    status = "ok" if err <= rtol else "FAIL"
    print(f"{status:4s} {name:28s} max |diff| / max |want| = {err:.2e}")
    if err > rtol:
        failures.append(name)


def loss_case(path, dtype, rtol):
    t, meta = st_io.read(path)
    hp = json.loads(meta["hparams_json"])
    b, d = t["in_img_feat"].shape
    k = t["in_proto_weight_raw"].shape[0]
    shapes = dict(tau_ita=hp["softmax_temperature"], tau_local=hp["local_temperature"],
                  tau_proto=hp["proto_temperature"], epsilon=hp["epsilon"],
                  sinkhorn_iterations=hp["sinkhorn_iterations"], quantiles=(0.1, 0.9),
                  freeze_prototypes_epochs=1)
    model = MGCA.__new__(MGCA)  # only the loss: no encoders needed
    torch.nn.Module.__init__(model)
    model.hp = shapes
    model.prototype_layer = torch.nn.Linear(d, k, bias=False).to(dtype)
    with torch.no_grad():
        model.prototype_layer.weight.copy_(torch.from_numpy(t["in_proto_weight_raw"]).to(dtype))
    raw = {n: torch.from_numpy(t["in_" + n]).to(dtype).requires_grad_()
           for n in ("img_feat", "report_feat", "patch_feat", "word_feat")}
    emb = {n: F.normalize(v, dim=-1) for n, v in raw.items()}
    loss_ita, loss_local, loss_proto, parts = model.loss(
        emb["img_feat"], emb["report_feat"], emb["patch_feat"], emb["word_feat"],
        torch.from_numpy(t["in_word_attn"]).to(dtype), torch.from_numpy(t["in_words_pad_mask"]),
        torch.from_numpy(t["in_img_attn_map"]).to(dtype) if "in_img_attn_map" in t else None)
    total = loss_ita + loss_local + loss_proto
    total.backward()
    tag = os.path.basename(path)
    for name, got in (("loss_ita", loss_ita), ("loss_ita_i2t", parts["loss_ita_i2t"]),
                      ("loss_ita_t2i", parts["loss_ita_t2i"]), ("loss_word", parts["loss_word"]),
                      ("loss_patch", parts["loss_patch"]), ("loss_local", loss_local),
                      ("loss_proto", loss_proto), ("loss_total", total)):
        close(f"{tag}:{name}", got, t[name], rtol)
    close(f"{tag}:proto_weight_normalized", model.prototype_layer.weight, t["proto_weight_normalized"], rtol)
    for n in ("img_feat", "report_feat", "patch_feat", "word_feat"):
        close(f"{tag}:grad_{n}", raw[n].grad, t["grad_" + n], rtol)
    close(f"{tag}:grad_proto_weight", model.prototype_layer.weight.grad, t["grad_proto_weight"], rtol)


def aggregation_case(path, rtol):
    t, meta = st_io.read(path)
    vocab = json.loads(meta["in_vocab"])
    enc = BertEncoder.__new__(BertEncoder)
    torch.nn.Module.__init__(enc)
    enc.idxtoword = vocab
    hidden = torch.from_numpy(t["in_last_hidden_state"])
    ids = torch.from_numpy(t["in_caption_ids"])
    attn = torch.from_numpy(t["in_attentions_last"])[:, :, 0, 1:].mean(dim=1)
    close("text_agg:last_layer_attn", attn, t["last_layer_attn"], rtol)
    for mode in ("official", "vectorized"):
        fn = enc.aggregate_tokens if mode == "official" else enc.aggregate_tokens_vectorized
        feat, sents, weights = fn(hidden, ids, attn)
        close(f"text_agg[{mode}]:report_feat", feat[:, 0], t["out_report_feat"], rtol)
        close(f"text_agg[{mode}]:word_feat", feat[:, 1:], t["out_word_feat"], rtol)
        close(f"text_agg[{mode}]:word_attn", weights[:, 1:], t["out_word_attn"], rtol)
        pad = np.array(sents)[:, 1:] == "[PAD]"
        if not np.array_equal(pad, t["out_words_pad_mask"]):
            print(f"FAIL text_agg[{mode}]:pad_mask {pad.astype(int)} vs {t['out_words_pad_mask'].astype(int)}")
            failures.append(f"text_agg[{mode}]:pad_mask")
        else:
            print(f"ok   text_agg[{mode}]:pad_mask")


loss_case(os.path.join(golden, "mgca_b_vit_float32.safetensors"), torch.float32, 1e-5)
loss_case(os.path.join(golden, "mgca_b_vit_float64.safetensors"), torch.float64, 1e-10)
loss_case(os.path.join(golden, "mgca_c_resnet_float32.safetensors"), torch.float32, 1e-5)
loss_case(os.path.join(golden, "mgca_c_resnet_float64.safetensors"), torch.float64, 1e-10)
aggregation_case(os.path.join(golden, "text_agg_float32.safetensors"), 1e-6)
aggregation_case(os.path.join(golden, "text_agg_float64.safetensors"), 1e-6)
if failures:
    print(f"{len(failures)} checks failed: {failures}")
    sys.exit(1)
print("all checks passed")
