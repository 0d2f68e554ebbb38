#!/opt/mgca-venv/bin/python
"""References for the model tests from the real implementations (the venv:
torch 2.11, torchvision, timm, transformers; models built from configs,
never downloaded).

    make_references.py CASE OUT.safetensors
    CASE: resnet | vit_torchvision | vit_timm | vit_timm_resize | bert

Each case builds the public implementation (torchvision resnet50 / vit_b_16,
timm vit_base_patch16_224, transformers BertModel), randomizes every
parameter and buffer with a fixed seed, runs a fixed input and writes, under
the public checkpoint names, the weights (float32) plus "ref.*" tensors: the
input, the outputs our encoders must reproduce and the gradients
("ref.grad.<public name>") of a fixed scalar loss. ViT and BERT run in
float64 (weights cast from the stored float32 values, exactly as ours are).
"""
import math
import sys

import timm
import torch
import torch.nn as nn
import torchvision
import transformers
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed


def write_safetensors(path, tensors):
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, path)


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


def timm_reference(model, x):
    """timm forward_features split into [CLS] and patches, and the last block's
    [CLS]→patch attention averaged over heads, taken from timm's own
    non-fused attention path (the probabilities pass through attn_drop)."""
    attn = model.blocks[-1].attn
    attn.fused_attn = False
    seen = []
    handle = attn.attn_drop.register_forward_hook(lambda module, inputs, output: seen.append(output.detach()))
    t = model.forward_features(x)
    handle.remove()
    return t[:, 0], t[:, 1:], seen[0].mean(1)[:, 0, 1:]


def vit_case(out, build, forward, grad_names):
    """ViT-B/16 at 224 px in float64: outputs, [CLS] attention and gradients."""
    g = torch.Generator().manual_seed(2)
    model = build()
    randomize(model, g)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in ("class_token", "encoder.pos_embedding", "cls_token", "pos_embed"):
                p.mul_(0.02)
    tensors = {k: v.clone() for k, v in model.state_dict().items()}  # float32
    model.double().eval()  # no dropout in either model; eval keeps attention on its reference path
    gray = torch.rand(2, 1, 224, 224, generator=g, dtype=torch.float64)
    glob, local, attn = forward(model, gray.expand(2, 3, 224, 224))
    r1 = torch.randn(glob.shape, generator=g, dtype=torch.float64)
    r2 = torch.randn(local.shape, generator=g, dtype=torch.float64)
    ((glob * r1).sum() + (local * r2).sum()).backward()
    tensors.update({"ref.input": gray, "ref.global": glob, "ref.local": local, "ref.patch_attention": attn,
                    "ref.r_global": r1, "ref.r_local": r2})
    tensors.update(grads(model, grad_names))
    write_safetensors(out, tensors)


def vit_torchvision_case(out):
    block = "encoder.layers.encoder_layer_{}."
    vit_case(out, torchvision.models.vit_b_16, vit_reference,
             ["conv_proj.weight", "conv_proj.bias", "class_token", "encoder.pos_embedding",
              block.format(0) + "ln_1.weight", block.format(5) + "self_attention.in_proj_weight",
              block.format(5) + "self_attention.in_proj_bias", block.format(7) + "self_attention.out_proj.bias",
              block.format(11) + "mlp.3.weight", block.format(11) + "mlp.0.bias", "encoder.ln.bias"])


def vit_timm_case(out):
    vit_case(out, lambda: timm.create_model("vit_base_patch16_224", pretrained=False), timm_reference,
             ["patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed", "blocks.0.norm1.weight",
              "blocks.5.attn.qkv.weight", "blocks.5.attn.qkv.bias", "blocks.7.attn.proj.bias",
              "blocks.11.mlp.fc2.weight", "blocks.11.mlp.fc1.bias", "norm.bias"])


def vit_timm_resize_case(out):
    """A small timm ViT saved at 32 px (grid 4); the reference output is timm's
    ViT at 48 px (grid 6) with the position table resampled by timm's
    resample_abs_pos_embed (bicubic, antialias off: see docs/design.md), so
    loading must interpolate."""
    g = torch.Generator().manual_seed(3)
    kw = dict(patch_size=8, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=10)
    small = timm.models.VisionTransformer(img_size=32, **kw)
    randomize(small, g)
    sd = {k: v.clone() for k, v in small.state_dict().items()}
    big = timm.models.VisionTransformer(img_size=48, **kw)
    big_sd = dict(sd)
    big_sd["pos_embed"] = resample_abs_pos_embed(sd["pos_embed"], (6, 6), num_prefix_tokens=1,
                                                 interpolation="bicubic", antialias=False)
    big.load_state_dict(big_sd)
    big.eval()
    x = torch.rand(3, 3, 48, 48, generator=g)
    with torch.no_grad():
        glob, local, attn = timm_reference(big, x)
    sd.update({"ref.input": x, "ref.global": glob, "ref.local": local, "ref.patch_attention": attn,
               "ref.pos_embed_48": big_sd["pos_embed"]})
    write_safetensors(out, sd)


def bert_case(out):
    """transformers' BertModel with Bio_ClinicalBERT's shapes and 4 layers, in
    float64; the reference is the state after 3 layers (our model builds 3,
    as MGCA builds 6 of 12) and the last of those layers' attention."""
    g = torch.Generator().manual_seed(4)
    config = transformers.BertConfig(
        vocab_size=28996, hidden_size=768, num_hidden_layers=4, num_attention_heads=12, intermediate_size=3072,
        max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config._attn_implementation = "eager"  # returns the attention probabilities
    model = transformers.BertModel(config)
    randomize(model, g)
    with torch.no_grad():
        for emb in (model.embeddings.word_embeddings, model.embeddings.position_embeddings,
                    model.embeddings.token_type_embeddings):
            emb.weight.mul_(0.5)
    tensors = {("bert." + k): v.clone() for k, v in model.state_dict().items()}
    tensors["bert.embeddings.position_ids"] = torch.arange(512)[None]  # older checkpoints store it
    tensors["cls.predictions.bias"] = torch.zeros(28996)  # an MLM head: skipped on load
    model.double().eval()
    lengths = [16, 9, 4]
    ids = torch.zeros(3, 16, dtype=torch.long)
    mask = torch.zeros(3, 16, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(1000, 28996, (n,), generator=g)
        ids[i, 0], ids[i, n - 1] = 101, 102
        mask[i, :n] = 1
    result = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    hidden, probs = result.hidden_states[3], result.attentions[2]
    r = torch.randn(hidden.shape, generator=g, dtype=torch.float64)
    (hidden * r).sum().backward()
    tensors.update({"ref.input_ids": ids, "ref.attention_mask": mask, "ref.hidden": hidden,
                    "ref.attention_last": probs, "ref.r_hidden": r})
    layer = "encoder.layer.{}."
    grad_names = ["embeddings.position_embeddings.weight", "embeddings.token_type_embeddings.weight",
                  "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for i in range(3):
        grad_names += [layer.format(i) + f"attention.self.{part}.{p}" for part in ("query", "key", "value")
                       for p in ("weight", "bias")]
        grad_names += [layer.format(i) + n for n in ("attention.output.dense.bias", "attention.output.LayerNorm.weight",
                                                     "attention.output.LayerNorm.bias", "intermediate.dense.bias",
                                                     "output.dense.bias", "output.LayerNorm.weight",
                                                     "output.LayerNorm.bias")]
    grad_names += [layer.format(1) + "intermediate.dense.weight", layer.format(2) + "output.dense.weight"]
    tensors.update(grads(model, grad_names))
    write_safetensors(out, tensors)


if __name__ == "__main__":
    torch.set_num_threads(1)
    case, out = sys.argv[1], sys.argv[2]
    {"resnet": resnet_case, "vit_torchvision": vit_torchvision_case, "vit_timm": vit_timm_case,
     "vit_timm_resize": vit_timm_resize_case, "bert": bert_case}[case](out)
