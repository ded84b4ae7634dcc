"""A classifier defined in your own code, for ``--model examples/own_model.py:build``.

Any callable that returns an ``nn.Module`` will do; dlapps passes ``num_classes`` (and ``in_shape``) where the
signature takes them, and every ``--set model.<key>=<value>`` as a keyword argument. The model may return the
logits, a tuple that starts with them, or a mapping with ``logits`` (as here).
"""

from torch import nn


class TwoHeadNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        embedding = self.features(x)
        return {"logits": self.classifier(embedding), "embedding": embedding}


def build(num_classes: int = 10, in_shape: tuple[int, int, int] = (3, 32, 32), width: int = 32) -> nn.Module:
    return TwoHeadNet(num_classes, in_shape[0], width)
