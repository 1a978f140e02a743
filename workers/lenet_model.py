"""The reduced LeNet: two conv/pool stages, a 128-unit dense layer, one output per class (ten for digits)."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class ReducedLeNet(nn.Module):
    """conv(k x k, f filters) -> act -> 2x2 max-pool, twice; dense 128 -> act; dense ``num_classes`` (logits).

    Convolutions are padded ("same", ``filter_size // 2``) so that the network fits any input
    of at least 4x4 pixels: 8x8 digits become 4x4 then 2x2, 28x28 MNIST 14x14 then 7x7. With
    an even filter size the output grows by one pixel per convolution, which still works.
    The softmax is part of the cross-entropy loss, so ``forward`` returns logits.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_filters: int = 16,
        filter_size: int = 5,
        activation: str = "relu",
        dropout: float = 0.0,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        channels = input_shape[0]
        act = ACTIVATIONS[activation]
        padding = filter_size // 2
        self.features = nn.Sequential(
            nn.Conv2d(channels, num_filters, filter_size, stride=1, padding=padding),
            act(),
            nn.MaxPool2d(2),
            nn.Conv2d(num_filters, num_filters, filter_size, stride=1, padding=padding),
            act(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *input_shape)).shape[1]
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(flat, 128),
            act(),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
