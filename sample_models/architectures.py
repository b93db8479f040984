"""Small CNNs for the sklearn 8x8 digits data, used as lipcert sample models.

Every model maps an input of shape (N, 1, 8, 8) to (N, 10) logits. They are kept tiny on purpose:
the full LipSDP matrix grows with the number of activation neurons, so the samples stay cheap
enough to certify in tests. This module imports only torch so it can be loaded standalone.
"""

from __future__ import annotations

import torch
from torch import nn


class DigitsChain(nn.Module):
    """Plain conv chain: conv -> ReLU -> strided conv -> ReLU -> linear (256 + 64 ReLU neurons)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        return self.fc(self.flatten(x))


class ResidualBlock(nn.Module):
    """x + conv(ReLU(conv(x))), shape preserving (channels x 8 x 8)."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class DigitsResidual(nn.Module):
    """conv -> BN -> ReLU -> residual block -> ReLU -> avgpool -> linear (3 x 256 ReLU neurons).

    The BatchNorm2d is there so that exporters/loaders have a BN to fold into the preceding conv.
    ``channels`` sets the width; the activation neuron count is 3 * 64 * channels.
    """

    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.block = ResidualBlock(channels)
        self.relu2 = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16 * channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.block(x))
        return self.fc(self.flatten(self.pool(x)))


class DigitsTanh(nn.Module):
    """Smooth activations: conv -> Tanh -> strided conv -> Sigmoid -> linear (256 + 64 neurons)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.tanh = nn.Tanh()
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.sigmoid = nn.Sigmoid()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tanh(self.conv1(x))
        x = self.sigmoid(self.conv2(x))
        return self.fc(self.flatten(x))


class DigitsLeNet(nn.Module):
    """LeNet-5 style: conv -> ReLU -> MaxPool 2x2 -> conv -> ReLU -> MaxPool 2x2 -> linear.

    192 + 96 ReLU neurons; lipcert rewrites each 2x2 max into 3 ReLU neurons per output
    (another 144 + 72), so the full LipSDP matrix is 568 wide.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc(self.flatten(x))


# Sample-model name -> class; train.py and the tests iterate over this.
MODELS: dict[str, type[nn.Module]] = {
    "digits_chain": DigitsChain,
    "digits_residual": DigitsResidual,
    "digits_tanh": DigitsTanh,
    "digits_lenet": DigitsLeNet,
}
