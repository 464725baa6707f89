"""Write the tiny VideoPose3D checkpoints of this folder with real PyTorch.

The files pin down what :mod:`chiral_tasks.lifting.pytorch` must read: a checkpoint
dict shaped as VideoPose3D's ``run.py`` saves it (``epoch``, ``lr``, ``random_state``,
an Adam ``optimizer`` state after one step, ``model_pos``, ``model_traj`` and
``random_state_semi``), in both of PyTorch's file formats, and the network's output
on a fixed input:

- ``tiny_zip.bin``: ``torch.save`` as is (the zip format);
- ``tiny_legacy.bin``: ``torch.save(..., _use_new_zipfile_serialization=False)``
  (the legacy format of VideoPose3D's released checkpoints);
- ``expected.npz`` (no pickles): ``x`` [2, 40, 17, 2] and the eval-mode output
  ``y`` [2, 14, 17, 3] of the network below.

The network repeats VideoPose3D's ``TemporalModel`` (``common/model.py``) module by
module, with the same attribute names and so the same state-dict keys: 17 input and
17 output joints, filter widths (3, 3, 3), 16 channels. Its batch-norm running
statistics and affine parameters are randomised so that the loader must copy them.

Run once, outside the project's environment (PyTorch is no dependency of the project)::

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
    /tmp/torchenv/bin/python tests/tasks/data/videopose3d/make_fixture.py

The committed files were written with torch 2.13.0+cpu and numpy 2.4.6 (Python 3.11).
A rerun rewrites ``tiny_zip.bin`` and ``expected.npz`` byte for byte; ``tiny_legacy.bin``
keeps its content, but its storage keys (memory addresses in that format) change.
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
JOINTS_IN, JOINTS_OUT = 17, 17
FILTER_WIDTHS = (3, 3, 3)
CHANNELS = 16


class TemporalModel(nn.Module):
    """VideoPose3D's non-causal ``TemporalModel``: [N, T, J_in, 2] -> [N, T - 26, J_out, 3]."""

    def __init__(self, joints_in, joints_out, filter_widths, channels, dropout=0.25):
        super().__init__()
        self.joints_out = joints_out
        self.drop = nn.Dropout(dropout)
        self.relu = nn.ReLU(inplace=True)
        self.expand_conv = nn.Conv1d(joints_in * 2, channels, filter_widths[0], bias=False)
        self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
        self.pads = []
        convs, norms = [], []
        dilation = filter_widths[0]
        for width in filter_widths[1:]:
            self.pads.append((width - 1) * dilation // 2)
            convs.append(nn.Conv1d(channels, channels, width, dilation=dilation, bias=False))
            norms.append(nn.BatchNorm1d(channels, momentum=0.1))
            convs.append(nn.Conv1d(channels, channels, 1, bias=False))
            norms.append(nn.BatchNorm1d(channels, momentum=0.1))
            dilation *= width
        self.layers_conv = nn.ModuleList(convs)
        self.layers_bn = nn.ModuleList(norms)
        self.shrink = nn.Conv1d(channels, joints_out * 3, 1)

    def forward(self, x):
        n, t = x.shape[:2]
        x = x.view(n, t, -1).permute(0, 2, 1)
        x = self.drop(self.relu(self.expand_bn(self.expand_conv(x))))
        for i, pad in enumerate(self.pads):
            res = x[:, :, pad : x.shape[2] - pad]
            conv, conv1 = self.layers_conv[2 * i], self.layers_conv[2 * i + 1]
            bn, bn1 = self.layers_bn[2 * i], self.layers_bn[2 * i + 1]
            x = self.drop(self.relu(bn(conv(x))))
            x = res + self.drop(self.relu(bn1(conv1(x))))
        x = self.shrink(x)
        return x.permute(0, 2, 1).reshape(n, -1, self.joints_out, 3)


def randomise_batch_norms(model: nn.Module, generator: torch.Generator) -> None:
    """Give every batch norm non-trivial running statistics and affine parameters."""
    with torch.no_grad():
        for bn in [model.expand_bn, *model.layers_bn]:
            size = bn.num_features
            bn.running_mean.copy_(torch.randn(size, generator=generator) * 0.5)
            bn.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.25)
            bn.weight.copy_(torch.rand(size, generator=generator) + 0.5)
            bn.bias.copy_(torch.randn(size, generator=generator) * 0.3)


def main() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    model = TemporalModel(JOINTS_IN, JOINTS_OUT, FILTER_WIDTHS, CHANNELS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    x = torch.randn(2, 40, JOINTS_IN, 2, generator=generator)
    model.train()
    loss = model(x).square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    randomise_batch_norms(model, generator)
    model.eval()
    with torch.no_grad():
        y = model(x)
    checkpoint = {
        "epoch": 1,
        "lr": 1e-3,
        "random_state": np.random.RandomState(0).get_state(),
        "optimizer": optimizer.state_dict(),
        "model_pos": model.state_dict(),
        "model_traj": None,
        "random_state_semi": None,
    }
    torch.save(checkpoint, HERE / "tiny_zip.bin")
    torch.save(checkpoint, HERE / "tiny_legacy.bin", _use_new_zipfile_serialization=False)
    np.savez(HERE / "expected.npz", x=x.numpy(), y=y.numpy())
    print(f"torch {torch.__version__}, numpy {np.__version__}: wrote {HERE}")


if __name__ == "__main__":
    main()
