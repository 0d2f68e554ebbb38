#!/usr/bin/env python3
# Per-patch linear probes on the final-norm patch tokens of an exported tiny
# ViT (vit_tiny: 64 px, patch 8, dim 192, depth 4) beside three random
# initialisations of the same architecture (src/model/vit.cpp's recipe:
# trunc-normal 0.02 linears and embeddings, LayerNorm 1/0, the conv's own
# default; Python's RNG, so not bit-equal to `mgca eval`'s random init):
# does a token carry its 8x8 patch's pixels (ridge R^2) and whether the patch
# is a lesion (ridge score, AUROC on the test split)? Images and masks are
# resized as the downstream protocols do (bilinear / nearest to 64 px).
#
#   scripts/token-probe.py DATA_DIR encoder.safetensors [TRAIN_IMAGES]
#
# DATA_DIR holds train/ and test/ written by `mgca synth` (docs/evaluation.md,
# "Segmentation and detection on the demo's encoder").
import sys, glob, math, h5py, torch, torch.nn.functional as F
from safetensors.torch import load_file


def roc_auc_score(labels, scores):
    # Mann-Whitney with mid-ranks (ties share their mean rank).
    labels, scores = torch.as_tensor(labels, dtype=torch.float64), torch.as_tensor(scores, dtype=torch.float64)
    order = scores.argsort(); s = scores[order]; ranks = torch.empty_like(s)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]: j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1; i = j + 1
    r = torch.empty_like(ranks); r[order] = ranks
    pos = labels > 0.5; n1 = int(pos.sum()); n0 = len(labels) - n1
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))

torch.set_num_threads(1)
D, P, H, DEPTH = 192, 8, 3, 4
def load_split(d):
    f = h5py.File(glob.glob(d + '/part-*.h5')[0]); x = torch.tensor(f['images'][()]).float()[:, None]; m = torch.tensor(f['masks'][()]).float()[:, None]
    x = F.interpolate(x, size=(64, 64), mode='bilinear', align_corners=False).round().clamp(0, 255)
    m = F.interpolate(m, size=(64, 64), mode='nearest')
    return (x / 255 - 0.5) / 0.5, m
def random_weights(seed):
    g = torch.Generator().manual_seed(seed); tn = lambda *s: torch.nn.init.trunc_normal_(torch.empty(*s), std=0.02, a=-2, b=2, generator=g)
    b = 1 / math.sqrt(3 * 64); w = {'patch_embed.proj.weight': torch.empty(D, 3, P, P).uniform_(-b, b, generator=g), 'patch_embed.proj.bias': torch.empty(D).uniform_(-b, b, generator=g),
         'pos_embed': tn(1, 65, D), 'cls_token': tn(1, 1, D), 'norm.weight': torch.ones(D), 'norm.bias': torch.zeros(D)}
    for i in range(DEPTH):
        p = f'blocks.{i}.'
        for n, s in [('attn.qkv', (3 * D, D)), ('attn.proj', (D, D)), ('mlp.fc1', (4 * D, D)), ('mlp.fc2', (D, 4 * D))]:
            w[p + n + '.weight'] = tn(*s); w[p + n + '.bias'] = torch.zeros(s[0])
        for n in ['norm1', 'norm2']: w[p + n + '.weight'] = torch.ones(D); w[p + n + '.bias'] = torch.zeros(D)
    return w
def tokens(w, x):
    out = []
    for xb in x.split(100):
        b = xb.shape[0]; W = w['patch_embed.proj.weight'].sum(1, keepdim=True)
        t = F.conv2d(xb, W, w['patch_embed.proj.bias'], stride=P).flatten(2).transpose(1, 2)
        h = torch.cat([w['cls_token'].expand(b, 1, D), t], 1) + w['pos_embed']
        for i in range(DEPTH):
            p = f'blocks.{i}.'
            y = F.layer_norm(h, (D,), w[p + 'norm1.weight'], w[p + 'norm1.bias'], 1e-6)
            q, k, v = F.linear(y, w[p + 'attn.qkv.weight'], w[p + 'attn.qkv.bias']).view(b, -1, 3, H, D // H).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, D)
            h = h + F.linear(a, w[p + 'attn.proj.weight'], w[p + 'attn.proj.bias'])
            y = F.layer_norm(h, (D,), w[p + 'norm2.weight'], w[p + 'norm2.bias'], 1e-6)
            h = h + F.linear(F.gelu(F.linear(y, w[p + 'mlp.fc1.weight'], w[p + 'mlp.fc1.bias'])), w[p + 'mlp.fc2.weight'], w[p + 'mlp.fc2.bias'])
        out.append(F.layer_norm(h, (D,), w['norm.weight'], w['norm.bias'], 1e-6)[:, 1:])
    return torch.cat(out).reshape(-1, D).double()
def ridge(Xtr, Ytr, Xte, lam=1.0):
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6; A = (Xtr - mu) / sd; B = (Xte - mu) / sd
    A = torch.cat([A, torch.ones(len(A), 1, dtype=A.dtype)], 1); B = torch.cat([B, torch.ones(len(B), 1, dtype=B.dtype)], 1)
    W = torch.linalg.solve(A.T @ A + lam * torch.eye(A.shape[1], dtype=A.dtype), A.T @ Ytr)
    return B @ W
data = sys.argv[1]
xtr, mtr = load_split(data + '/train'); xte, mte = load_split(data + '/test')
ntr = int(sys.argv[3]) if len(sys.argv) > 3 else 100
xtr, mtr = xtr[:ntr], mtr[:ntr]
patches = lambda x: F.unfold(x, P, stride=P).transpose(1, 2).reshape(-1, P * P).double()
ptr, pte = patches(xtr), patches(xte)
ltr = (patches(mtr).mean(1) > 0.25).double()[:, None]; lte = (patches(mte).mean(1) > 0.25).double().numpy()
print(f'{ntr} train images, lesion patches (>25 % masked): train {int(ltr.sum())}, test {int(lte.sum())} of {len(lte)}')
encs = [('pretrained', load_file(sys.argv[2]))] + [(f'random seed {s}', random_weights(s)) for s in range(3)]
for name, w in encs:
    ttr, tte = tokens(w, xtr), tokens(w, xte)
    rec = ridge(ttr, ptr, tte); r2 = 1 - ((rec - pte) ** 2).sum() / ((pte - pte.mean(0)) ** 2).sum()
    auc = roc_auc_score(lte, ridge(ttr, ltr, tte)[:, 0].numpy())
    pix = roc_auc_score(lte, ridge(ptr, ltr, pte)[:, 0].numpy())
    print(f'{name:16s} pixel R^2 {r2:.3f}  lesion-patch AUROC {auc:.3f}  (raw patch pixels: {pix:.3f})')
