"""PyTorch forms of two of our train steps on the CPU, for `compare_torch.py --device cpu`.

    python benchmarks/torch_cpu.py --output FILE [--threads N] [--cases ...]

Needs PyTorch (``pip install torch --index-url https://download.pytorch.org/whl/cpu``, best in
its own virtual environment: nothing in genres_jax imports it). The cases mirror our configs layer
for layer, in eager PyTorch with ``torch.set_num_threads`` threads and channels-last tensors
where that is faster:

* ``dcgan28_bs64``: `configs/dcgan_fashion_mnist.py` (features 32, latent 100): G = ConvT 7x7 to
  7x7x64, BN, ReLU, ConvT 4x4/2 to 14x14x32, BN, ReLU, ConvT 4x4/2 to 28x28x1, tanh; D = Conv
  4x4/2 to 32, LReLU(0.2), Conv 4x4/2 to 64, BN, LReLU, Conv 7x7 to one logit; non-saturating
  BCE-with-logits; Adam(2e-4, betas (0.5, 0.999)) for each; the generator update reuses the
  discriminator step's fakes (our ``gan.g_fakes=shared``).
* ``edsr_m_x2_bs16_lr48``: EDSR-M x2 (64 features, 16 residual blocks, residual scale 1,
  pixel-shuffle upsampler), L1 loss, Adam(2e-4), batch 16 of 48x48 LR patches.

Each case runs ``--warmup`` steps, then ``--steps`` steps in ``--windows`` windows; the median
window gives the step time. Writes a JSON list of records ``{case, ms_per_step, img_s, threads}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


class DCGANGenerator28(nn.Module):
    def __init__(self, nz: int = 100, f: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, 2 * f, 7, 1, 0, bias=False),
            nn.BatchNorm2d(2 * f, momentum=0.1, eps=1e-5),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * f, f, 4, 2, 1, bias=False),
            nn.BatchNorm2d(f, momentum=0.1, eps=1e-5),
            nn.ReLU(),
            nn.ConvTranspose2d(f, 1, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z):
        return self.net(z[:, :, None, None])


class DCGANDiscriminator28(nn.Module):
    def __init__(self, f: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, f, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2),
            nn.Conv2d(f, 2 * f, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * f, momentum=0.1, eps=1e-5),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * f, 1, 7, 1, 0, bias=False),
        )

    def forward(self, x):
        return self.net(x).flatten()


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding=1)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.c2(F.relu(self.c1(x)))


class EDSR(nn.Module):
    def __init__(self, c: int = 64, blocks: int = 16, scale: int = 2):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(
            *[ResBlock(c) for _ in range(blocks)], nn.Conv2d(c, c, 3, padding=1)
        )
        self.up = nn.Sequential(
            nn.Conv2d(c, c * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x):
        h = self.head(x)
        return self.tail(self.up(h + self.body(h)))


def dcgan_step(batch: int, channels_last: bool):
    g, d = DCGANGenerator28(), DCGANDiscriminator28()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    g, d = g.to(memory_format=fmt), d.to(memory_format=fmt)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    real = (torch.rand(batch, 1, 28, 28) * 2 - 1).to(memory_format=fmt)
    ones, zeros = torch.ones(batch), torch.zeros(batch)
    bce = F.binary_cross_entropy_with_logits

    def step():
        fake = g(torch.randn(batch, 100))
        loss_d = bce(d(real), ones) + bce(d(fake.detach()), zeros)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = bce(d(fake), ones)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

    return step


def edsr_step(batch: int, lr_size: int, channels_last: bool):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = EDSR().to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), 2e-4)
    x = torch.rand(batch, 3, lr_size, lr_size).to(memory_format=fmt)
    y = torch.rand(batch, 3, 2 * lr_size, 2 * lr_size).to(memory_format=fmt)

    def step():
        loss = F.l1_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


CASES = {
    "dcgan28_bs64": (lambda cl: dcgan_step(64, cl), 64),
    "edsr_m_x2_bs16_lr48": (lambda cl: edsr_step(16, 48, cl), 16),
}


def time_step(step, warmup: int, steps: int, windows: int) -> float:
    """Median over windows of the mean step time (s)."""
    for _ in range(warmup):
        step()
    per_window = max(1, steps // windows)
    times = []
    for _ in range(windows):
        t = time.perf_counter()
        for _ in range(per_window):
            step()
        times.append((time.perf_counter() - t) / per_window)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True)
    p.add_argument("--threads", type=int, default=0, help="0: one per CPU core")
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--windows", type=int, default=3)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    records = []
    for case in args.cases:
        build, batch = CASES[case]
        best = None
        for channels_last in (False, True):
            sec = time_step(build(channels_last), args.warmup, args.steps, args.windows)
            form = "channels_last" if channels_last else "contiguous"
            print(f"{case} {form}: {sec * 1e3:.1f} ms/step", flush=True)
            if best is None or sec < best[0]:
                best = (sec, form)
        records.append(
            {
                "case": case,
                "ms_per_step": best[0] * 1e3,
                "img_s": batch / best[0],
                "form": best[1],
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
            }
        )
    with open(args.output, "w") as f:
        json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
