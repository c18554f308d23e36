"""Train the ECG5000 LSTM autoencoder with a checkpoint after every epoch; cache it.

Usage: ``python docs/reproduction/probes/ecg_train.py OUT n_train n_test dim batch epochs seed``
writes ``OUT/best.pt`` (best test loss, as the experiments restore), ``OUT/ckpt/*`` and
``OUT/losses.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from docs.reproduction.probes._common import ecg_model, ecg_splits
from lfxai.devices import seed_everything
from lfxai.training import TrainingSettings, fit


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    n_train, n_test, dim, batch, epochs, seed = map(int, argv[1:7])
    torch.set_num_threads(1)
    splits = ecg_splits(n_train, n_test, seed)
    seed_everything(seed)
    model = ecg_model(dim, splits)
    wall, cpu = time.time(), time.process_time()
    settings = TrainingSettings(epochs, batch, patience=10, checkpoint_every=1, seed=seed)
    result = fit(
        model,
        splits.train,
        splits.test,
        torch.device("cpu"),
        settings,
        checkpoint_dir=out / "ckpt",
        progress=False,
    )
    torch.save(model.state_dict(), out / "best.pt")
    losses = {"train": result.train_loss, "test": result.test_loss, "best": result.best_epoch + 1}
    (out / "losses.json").write_text(json.dumps(losses))
    print(f"test L1 per epoch {[round(v, 4) for v in result.test_loss]}")
    print(f"best epoch {losses['best']}")
    print(f"wall {time.time() - wall:.0f} s, cpu {time.process_time() - cpu:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
