"""Train the bundled demo backbone `oodbench-tiny-fmnist:demo`, a small open_clip CLIP.

    apt-get install dataset-fashion-mnist
    python scripts/train_demo_backbone.py            # 15 epochs; ~10 minutes on 2 idle CPU cores

Contrastive image-text training on the Fashion-MNIST train images outside the demo's few-shot
pool, with captions drawn from several templates over all ten class names and open_clip's CLIP
tokenizer. Captions of the same class are all positives of an image (a multi-positive CLIP loss),
so the ten-class batches carry no false negatives. Fixed seed; writes fp16 safetensors beside the
model config in benchmark/assets/oodbench-tiny-fmnist/. Measure the result with
`oodbench run --suite fmnist-ood --backbone oodbench-tiny-fmnist:demo --method zero_shot`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import demo_sources as src  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ASSET_DIR = ROOT / "benchmark" / "assets" / "oodbench-tiny-fmnist"
ARCH = "oodbench-tiny-fmnist"
TRAIN_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a photo of the {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
    "a grey photo of a {}.",
    "a product photo of a {}.",
    "a {}.",
    "a small photo of a {}.",
)
MEAN = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
STD = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B,28,28] -> normalised float [B,3,28,28], as open_clip's preprocessing does."""
    x = images.float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
    return (x - MEAN) / STD


def augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 pixels and horizontal flips."""
    b = images.shape[0]
    padded = F.pad(images, (2, 2, 2, 2))
    dx = torch.randint(0, 5, (b,), generator=gen)
    dy = torch.randint(0, 5, (b,), generator=gen)
    idx = torch.arange(28)
    rows = (dy[:, None] + idx[None, :])[:, :, None].expand(b, 28, 28)
    cols = (dx[:, None] + idx[None, :])[:, None, :].expand(b, 28, 28)
    out = padded[torch.arange(b)[:, None, None], rows, cols]
    flip = torch.rand(b, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def encode_captions(model, tokens: torch.Tensor) -> torch.Tensor:
    """`model.encode_text(tokens)` computed on the columns up to the last EOS only.

    The text tower is causal, so the output at a caption's EOS never depends on the padding after
    it: cutting the padding gives the same features (up to float rounding) and the same gradients,
    at a fraction of the cost of running all 77 positions of the model's text context."""
    from open_clip.model import text_global_pool

    length = int(tokens.argmax(dim=-1).max()) + 1  # CLIP's EOS has the largest token id
    tokens = tokens[:, :length]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = text_global_pool(model.ln_final(x), tokens, model.text_pool_type)
    return x @ model.text_projection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ASSET_DIR / "weights.safetensors")
    args = parser.parse_args()

    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    open_clip.add_model_config(ASSET_DIR / f"{ARCH}.json")
    model = open_clip.create_model(ARCH, pretrained=None)
    tokenizer = open_clip.get_tokenizer(ARCH)

    train_x, train_y = src.fashion_mnist("train")
    keep = np.setdiff1d(np.arange(len(train_y)), src.pool_indices(train_y))
    images = torch.from_numpy(train_x[keep].copy())
    labels = torch.from_numpy(train_y[keep].copy())
    print(f"training on {len(labels)} Fashion-MNIST train images (pool of {len(train_y) - len(keep)} held out)")

    n_t = len(TRAIN_TEMPLATES)
    captions = [t.format(c) for c in src.FMNIST_CLASSES for t in TRAIN_TEMPLATES]  # class-major
    tokens = tokenizer(captions)
    if tokens.shape[1] != model.context_length:
        raise SystemExit(f"tokenizer context {tokens.shape[1]} != model text context {model.context_length}")
    caption_class = torch.arange(10).repeat_interleave(n_t)

    steps_per_epoch = len(labels) // args.batch_size
    total = steps_per_epoch * args.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total, pct_start=0.1)
    model.train()
    start = time.time()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(labels), generator=gen)
        running = 0.0
        for step in range(steps_per_epoch):
            idx = perm[step * args.batch_size : (step + 1) * args.batch_size]
            x = to_model_input(augment(images[idx], gen))
            y = labels[idx]
            # one caption per image, from a random template of its class
            cap = y * n_t + torch.randint(0, n_t, (len(y),), generator=gen)
            img_f = F.normalize(model.encode_image(x), dim=-1)
            txt_all = F.normalize(encode_captions(model, tokens), dim=-1)
            txt_f = txt_all[cap]
            scale = model.logit_scale.exp().clamp(max=100)
            logits = scale * img_f @ txt_f.T
            pos = (y[:, None] == y[None, :]).float()
            loss_i = -(pos / pos.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
            loss_t = -(pos / pos.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
            # all captions against class means keeps every template aligned with its class
            protos = F.normalize(img_f.new_zeros(10, img_f.shape[1]).index_add_(0, y, img_f), dim=-1)
            present = torch.bincount(y, minlength=10) > 0
            cap_logits = scale * txt_all[present[caption_class]] @ protos[present].T
            cap_target = torch.cumsum(present.long(), 0)[caption_class[present[caption_class]]] - 1
            loss_c = F.cross_entropy(cap_logits, cap_target)
            loss = (loss_i + loss_t) / 2 + 0.5 * loss_c
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item()
        print(
            f"epoch {epoch + 1}/{args.epochs}  loss {running / steps_per_epoch:.4f}  "
            f"logit scale {model.logit_scale.exp().item():.1f}  {time.time() - start:.0f}s",
            flush=True,
        )

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"arch": ARCH, "seed": str(args.seed), "epochs": str(args.epochs)})
    tmp.replace(args.out)
    record = write_record(args.out, args, context_length=model.context_length)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB) and {record.name}")


def write_record(weights: Path, args: argparse.Namespace, *, context_length: int) -> Path:
    """`training.json` beside the weights: their sha256 and the settings that made them (pinned by the tests)."""
    import hashlib
    import json

    record = {
        "weights": weights.name,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "script": "scripts/train_demo_backbone.py",
        "arch": ARCH,
        "text_context_length": context_length,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
    }
    path = weights.with_name("training.json")
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


if __name__ == "__main__":
    main()
