#!/opt/mgca-venv/bin/python
"""Independent references for the model tests (run with the venv's Python:
torch 2.11 + torchvision 0.26).

    make_references.py CASE OUT.safetensors      CASE: resnet | vit | vit_timm | bert

Each case builds the public implementation (torchvision resnet50 / vit_b_16)
or, for BERT, a Hugging Face-named BERT written here from PyTorch's own
modules, randomizes every parameter and buffer with a fixed seed, runs a fixed
input and writes, under the public checkpoint names, the weights plus
"ref.*" tensors: the input, the outputs our encoders must reproduce and the
gradients of a fixed scalar loss. Files are written by hand in the
safetensors format (there is no safetensors package here).
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

DTYPES = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("int64"): "I64",
          np.dtype("bool"): "BOOL"}


def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        a = np.array(t.detach().cpu().numpy() if torch.is_tensor(t) else t, order="C")  # keeps 0-d shapes
        data = a.tobytes()
        header[name] = {"dtype": DTYPES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def randomize(module, generator):
    """Every parameter and float buffer gets seeded random values of a sane scale."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("weight") and p.dim() == 1:  # norm scales
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=generator))
            elif p.dim() == 1:  # biases
                p.copy_(0.05 * torch.randn(p.shape, generator=generator))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(max(fan_in, 1)))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=generator))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=generator))


def grads(model, names):
    return {f"ref.grad.{n}": dict(model.named_parameters())[n].grad for n in names}


def resnet_case(out):
    g = torch.Generator().manual_seed(1)
    model = torchvision.models.resnet50()
    randomize(model, g)
    gray = torch.rand(2, 1, 224, 224, generator=g)

    def forward(m, x, size):  # MGCA's ImageEncoder.resnet_forward
        x = nn.Upsample(size=(size, size), mode="bilinear", align_corners=True)(x)
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer3(m.layer2(m.layer1(x)))
        local = x.flatten(2).transpose(1, 2)
        x = m.layer4(x)
        return torch.flatten(m.avgpool(x), 1), local

    tensors = {k: v.clone() for k, v in model.state_dict().items()}  # before training mutates BN stats
    f64 = torchvision.models.resnet50()
    f64.load_state_dict(tensors)
    rgb = gray.expand(2, 3, 224, 224)  # the official pipeline replicates gray to RGB
    model.eval()
    with torch.no_grad():
        glob, local = forward(model, rgb, 299)
    tensors.update({"ref.input": gray, "ref.eval.global": glob, "ref.eval.local": local})
    model.train()
    with torch.no_grad():
        glob, local = forward(model, rgb, 299)
    tensors.update({"ref.train.global": glob, "ref.train.local": local,
                    "ref.train.layer1.0.bn1.running_mean": model.layer1[0].bn1.running_mean,
                    "ref.train.layer1.0.bn1.running_var": model.layer1[0].bn1.running_var})
    # Gradients in float64 (small input): in float32, rounding flips ReLU masks of
    # near-zero activations and the weight gradients of a random ResNet differ by
    # percents between any two conv implementations.
    f64.double().train()
    gray64 = torch.rand(2, 1, 64, 64, generator=g, dtype=torch.float64)
    glob, local = forward(f64, gray64.expand(2, 3, 64, 64), 96)
    r1 = torch.randn(glob.shape, generator=g, dtype=torch.float64)
    r2 = torch.randn(local.shape, generator=g, dtype=torch.float64)
    ((glob * r1).sum() + (local * r2).sum()).backward()
    tensors.update({"ref.f64.input": gray64, "ref.f64.global": glob, "ref.f64.local": local,
                    "ref.f64.r_global": r1, "ref.f64.r_local": r2})
    tensors.update({"ref.f64." + k[4:]: v for k, v in grads(f64, ["conv1.weight", "layer2.1.conv2.weight",
                                                                  "layer4.2.bn3.bias"]).items()})
    write_safetensors(out, tensors)


def vit_reference(model, x):
    """torchvision ViT forward that also returns the last block's [CLS]→patch
    attention averaged over heads (from nn.MultiheadAttention itself)."""
    n = x.shape[0]
    t = model._process_input(x)
    t = torch.cat([model.class_token.expand(n, -1, -1), t], dim=1)
    t = t + model.encoder.pos_embedding
    layers = list(model.encoder.layers)
    for blk in layers[:-1]:
        t = blk(t)
    last = layers[-1]
    h = last.ln_1(t)
    _, attn = last.self_attention(h, h, h, need_weights=True, average_attn_weights=True)
    t = last(t)
    t = model.encoder.ln(t)
    return t[:, 0], t[:, 1:], attn[:, 0, 1:]


def vit_case(out):
    g = torch.Generator().manual_seed(2)
    model = torchvision.models.vit_b_16()
    randomize(model, g)
    with torch.no_grad():
        model.class_token.mul_(0.02)
        model.encoder.pos_embedding.mul_(0.02)
    model.eval()  # no dropout in vit_b_16; eval keeps MultiheadAttention on its reference path
    gray = torch.rand(2, 1, 224, 224, generator=g)
    glob, local, attn = vit_reference(model, gray.expand(2, 3, 224, 224))
    r1 = torch.randn(glob.shape, generator=g)
    r2 = torch.randn(local.shape, generator=g)
    ((glob * r1).sum() + (local * r2).sum()).backward()
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors.update({"ref.input": gray, "ref.global": glob, "ref.local": local, "ref.patch_attention": attn,
                    "ref.r_global": r1, "ref.r_local": r2})
    tensors.update(grads(model, ["conv_proj.weight", "encoder.layers.encoder_layer_5.self_attention.in_proj_weight",
                                 "encoder.layers.encoder_layer_11.mlp.3.weight", "encoder.pos_embedding"]))
    write_safetensors(out, tensors)


def vit_timm_case(out):
    """A small ViT saved under timm names at 32 px (grid 4); the reference output
    is the same network at 48 px (grid 6) with timm's bicubic resampling of the
    position embedding, so loading must interpolate."""
    g = torch.Generator().manual_seed(3)
    kw = dict(patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128)
    small = torchvision.models.VisionTransformer(image_size=32, **kw)
    randomize(small, g)
    sd = small.state_dict()
    timm = {"cls_token": sd["class_token"], "pos_embed": sd["encoder.pos_embedding"],
            "patch_embed.proj.weight": sd["conv_proj.weight"], "patch_embed.proj.bias": sd["conv_proj.bias"],
            "norm.weight": sd["encoder.ln.weight"], "norm.bias": sd["encoder.ln.bias"],
            "head.weight": sd["heads.head.weight"], "head.bias": sd["heads.head.bias"]}
    names = {"ln_1": "norm1", "self_attention.in_proj_weight": "attn.qkv.weight",
             "self_attention.in_proj_bias": "attn.qkv.bias", "self_attention.out_proj": "attn.proj",
             "ln_2": "norm2", "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2"}
    for k, v in sd.items():
        if k.startswith("encoder.layers."):
            i, rest = k[len("encoder.layers.encoder_layer_"):].split(".", 1)
            for a, b in names.items():
                if rest.startswith(a):
                    timm[f"blocks.{i}.{b}{rest[len(a):]}"] = v
                    break
            else:
                raise KeyError(k)
    assert len(timm) == len(sd)
    big = torchvision.models.VisionTransformer(image_size=48, **kw)
    big_sd = dict(sd)
    pos = sd["encoder.pos_embedding"]
    grid = pos[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(6, 6), mode="bicubic", align_corners=False)
    big_sd["encoder.pos_embedding"] = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 36, -1)], 1)
    big.load_state_dict(big_sd)
    big.eval()
    x = torch.rand(3, 3, 48, 48, generator=g)
    with torch.no_grad():
        glob, local, attn = vit_reference(big, x)
    timm.update({"ref.input": x, "ref.global": glob, "ref.local": local, "ref.patch_attention": attn,
                 "ref.pos_embed_48": big_sd["encoder.pos_embedding"]})
    write_safetensors(out, timm)


class Bert(nn.Module):
    """BERT (post-norm) from PyTorch modules, with Hugging Face's names."""

    def __init__(self, vocab=28996, hidden=768, layers=4, heads=12, inter=3072, positions=512, eps=1e-12):
        super().__init__()
        self.heads, self.eps = heads, eps
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(vocab, hidden)
        self.embeddings.position_embeddings = nn.Embedding(positions, hidden)
        self.embeddings.token_type_embeddings = nn.Embedding(2, hidden)
        self.embeddings.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList()
        for _ in range(layers):
            l = nn.Module()
            l.attention = nn.Module()
            l.attention.self = nn.Module()
            l.attention.self.query = nn.Linear(hidden, hidden)
            l.attention.self.key = nn.Linear(hidden, hidden)
            l.attention.self.value = nn.Linear(hidden, hidden)
            l.attention.output = nn.Module()
            l.attention.output.dense = nn.Linear(hidden, hidden)
            l.attention.output.LayerNorm = nn.LayerNorm(hidden, eps=eps)
            l.intermediate = nn.Module()
            l.intermediate.dense = nn.Linear(hidden, inter)
            l.output = nn.Module()
            l.output.dense = nn.Linear(inter, hidden)
            l.output.LayerNorm = nn.LayerNorm(hidden, eps=eps)
            self.encoder.layer.append(l)
        self.pooler = nn.Module()
        self.pooler.dense = nn.Linear(hidden, hidden)

    def forward(self, ids, mask, num_layers):
        b, n = ids.shape
        e = self.embeddings
        x = e.word_embeddings(ids) + e.position_embeddings(torch.arange(n))[None] + \
            e.token_type_embeddings(torch.zeros_like(ids))
        x = e.LayerNorm(x)
        ext = (1.0 - mask[:, None, None, :].float()) * -10000.0
        probs = None
        for l in list(self.encoder.layer)[:num_layers]:
            s = l.attention.self

            def split(t):
                return t.view(b, n, self.heads, -1).permute(0, 2, 1, 3)

            q, k, v = split(s.query(x)), split(s.key(x)), split(s.value(x))
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + ext
            probs = torch.softmax(scores, dim=-1)
            ctx = (probs @ v).permute(0, 2, 1, 3).reshape(b, n, -1)
            a = l.attention.output.LayerNorm(l.attention.output.dense(ctx) + x)
            x = l.output.LayerNorm(l.output.dense(F.gelu(l.intermediate.dense(a))) + a)
        return x, probs


def bert_case(out):
    g = torch.Generator().manual_seed(4)
    model = Bert()
    randomize(model, g)
    with torch.no_grad():
        for emb in (model.embeddings.word_embeddings, model.embeddings.position_embeddings,
                    model.embeddings.token_type_embeddings):
            emb.weight.mul_(0.5)
    lengths = [16, 9, 4]
    ids = torch.zeros(3, 16, dtype=torch.long)
    mask = torch.zeros(3, 16, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(1000, 28996, (n,), generator=g)
        ids[i, 0], ids[i, n - 1] = 101, 102
        mask[i, :n] = 1
    hidden, probs = model(ids, mask, num_layers=3)  # the checkpoint has 4 layers, the model uses 3
    r = torch.randn(hidden.shape, generator=g)
    (hidden * r).sum().backward()
    tensors = {("bert." + k): v for k, v in model.state_dict().items()}
    tensors["bert.embeddings.position_ids"] = torch.arange(512)[None]
    tensors.update({"cls.predictions.bias": torch.zeros(28996),  # an MLM head: skipped on load
                    "ref.input_ids": ids, "ref.attention_mask": mask, "ref.hidden": hidden,
                    "ref.attention_last": probs, "ref.r_hidden": r})
    tensors.update(grads(model, [
        "embeddings.position_embeddings.weight", "embeddings.LayerNorm.weight",
        "encoder.layer.0.attention.self.key.weight", "encoder.layer.1.intermediate.dense.weight",
        "encoder.layer.2.attention.self.value.bias", "encoder.layer.2.output.LayerNorm.bias"]))
    write_safetensors(out, tensors)


if __name__ == "__main__":
    torch.set_num_threads(1)
    case, out = sys.argv[1], sys.argv[2]
    {"resnet": resnet_case, "vit": vit_case, "vit_timm": vit_timm_case, "bert": bert_case}[case](out)
