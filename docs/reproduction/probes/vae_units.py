"""Train one Burgess VAE on 32x32 MNIST (d = 3) and measure its units' saliency as training
goes on: the disvae metrics at chosen epochs, with each unit's KL and share of the saliency.

Usage: ``python docs/reproduction/probes/vae_units.py loss beta n_train batch epochs
EVAL_EPOCHS n_explained seed`` (``loss``: beta_vae | beta_tc_vae; ``EVAL_EPOCHS`` e.g.
``5,10,20,40``). The quick profile is ``n_train=10000 batch=100`` and 10 epochs, 1,000
explained test images; the paper 60,000 images at batch 300 for up to 100 epochs.
"""

from __future__ import annotations

import sys
import time

import torch

from lfxai.devices import seed_everything
from lfxai.explanations.features import attribute_individual_dim, make_feature_method
from lfxai.metrics.disentanglement import saliency_metrics
from lfxai.models.vae import burgess_vae
from lfxai.plugins.base import get_dataset


def main(argv: list[str]) -> None:
    loss, beta = argv[0], float(argv[1])
    n_train, batch, epochs = map(int, argv[2:5])
    evaluated = {int(e) for e in argv[5].split(",")}
    n_explained, seed = int(argv[6]), int(argv[7])
    torch.set_num_threads(1)
    size = None if n_train >= 60000 else n_train
    splits = get_dataset("mnist").load("data", "resized32", seed, size, 2000)
    explain, x = splits.explain.head(n_explained), splits.train.x
    seed_everything(seed)
    model = burgess_vae((1, 32, 32), 3, loss, beta, len(x), "vae")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    shuffle = torch.Generator().manual_seed(seed)
    wall, cpu = time.time(), time.process_time()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=shuffle)
        for start in range(0, len(x), batch):
            objective = model.loss(x[order[start : start + batch]])
            optimizer.zero_grad()
            objective.backward()
            optimizer.step()
        if epoch not in evaluated:
            continue
        model.eval()
        encoder = model.encoder
        with torch.no_grad():
            mean, log_var = encoder.moments(explain.x)
            kl = (0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var)).mean(0)
            reconstruction = model.loss_terms(splits.test.x[:1000])["reconstruction"].item()
        method = make_feature_method("GradientShap", encoder, seed=seed)
        saliency = attribute_individual_dim(
            encoder,
            3,
            explain.loader(500),
            torch.device("cpu"),
            method,
            torch.zeros(1, 1, 32, 32),
            progress=False,
        )
        metrics = saliency_metrics(saliency)
        share = saliency.sum(axis=(0, 2, 3))
        print(
            f"epoch {epoch:3d} ({epoch * -(-len(x) // batch)} steps): test reconstruction "
            f"{reconstruction:.1f}, KL per unit {[round(float(v), 2) for v in kl]}, saliency "
            f"share {[round(float(v), 3) for v in share / share.sum()]}; pearson "
            f"{metrics['pearson']:.3f} entropy {metrics['entropy']:.3f} active "
            f"{metrics['active_units']:.3f} | wall {time.time() - wall:.0f} s cpu "
            f"{time.process_time() - cpu:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
