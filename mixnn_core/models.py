"""Models, each a feature extractor plus a linear classifier.

Every model has ``features(x) -> h`` (the penultimate representation used for the neighbour
search), ``classifier`` (a Linear layer) and ``forward(x) = classifier(features(x))``.
``build_model(name, input_shape, num_classes)`` chooses by name; ``input_shape`` is (C, H, W)
as read from the data.

Weights and inputs are kept channels-last (N, H, W, C in memory): on this machine's CPU the
small CNN's evaluation pass ran 2.0x and its training step 1.4x faster than channels-first
(1 thread, batch 256 / 128; BENCHMARKS.md, cost).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.experimental.optimization import fuse


class FeatureClassifier(nn.Module):
    """A backbone that maps images to ``feature_dim`` features, then a linear classifier."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.classifier = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x.contiguous(memory_format=torch.channels_last))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def for_inference(self) -> "FeatureClassifier":
        """A copy for evaluation only, the same function as this model in eval mode: every
        BatchNorm that follows a convolution folded into it (torch.fx), which halved the CPU
        time of the small CNN's evaluation pass (20k Fashion-MNIST images: 2.1 s vs 3.7 s).
        The classifier is shared, not copied; make a new copy after each training step."""
        folded = FeatureClassifier(fuse(self.backbone.eval()), self.feature_dim,
                                   self.classifier.out_features)
        folded.classifier = self.classifier
        return folded.to(memory_format=torch.channels_last).eval()


def small_cnn_backbone(channels: int, height: int, width: int, feature_dim: int = 128) -> nn.Module:
    """Two conv + BN + max-pool blocks, then a fully connected layer: seconds per CPU epoch.

    Each block pools before its ReLU: the same function as ReLU then pooling (the maximum
    commutes with a non-decreasing map), with a quarter of the ReLU work.
    """
    if height < 4 or width < 4:
        raise ValueError(f"small_cnn needs images of at least 4x4 pixels, got {height}x{width}")
    flat = 64 * (height // 4) * (width // 4)
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(flat, feature_dim), nn.ReLU(inplace=True),
    )


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016, identity mappings)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNetBackbone(nn.Module):
    """CIFAR-style pre-activation ResNet: 3x3 stem, no max-pool, 512-d pooled features."""

    def __init__(self, channels: int, blocks_per_stage: tuple[int, int, int, int]):
        super().__init__()
        self.stem = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        layers, in_planes = [], 64
        for planes, n_blocks, stride in zip((64, 128, 256, 512), blocks_per_stage, (1, 2, 2, 2)):
            for block_stride in [stride] + [1] * (n_blocks - 1):
                layers.append(PreActBlock(in_planes, planes, block_stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.stem(x))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


def torchvision_resnet_backbone(name: str, channels: int) -> tuple[nn.Module, int]:
    """An untrained torchvision ResNet (ImageNet-style stem) without its final layer."""
    import torchvision  # here, not at the top: importing it costs 164 MB of memory per process

    net = getattr(torchvision.models, name)(weights=None)
    if channels != 3:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, feature_dim


MODEL_NAMES = ("auto", "small_cnn", "preact_resnet18", "preact_resnet34",
               "resnet18", "resnet34", "resnet50")


def resolve_model_name(name: str, input_shape: tuple[int, int, int]) -> str:
    """``auto``: the small CNN for images under 32 pixels and for grey images up to 32x32,
    torchvision ResNet-18 for colour images from 32x32 and every larger image.

    On CIFAR-10N ``worse_label`` (colour, 32x32) ResNet-18 scored 0.4970 on held-out noisy
    labels against the small CNN's 0.4838 (plain training, 20 epochs), at 3.7-5.2x the CPU
    time per step (BENCHMARKS.md, ninth pass); the grey 28x28 Fashion-MNIST defaults were
    chosen with the small CNN.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if name != "auto":
        return name
    channels, largest = input_shape[0], max(input_shape[1:])
    small = largest < 32 or (channels == 1 and largest <= 32)
    return "small_cnn" if small else "resnet18"


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int) -> FeatureClassifier:
    """The model called ``name`` for images of ``input_shape`` (C, H, W) and ``num_classes``."""
    channels, height, width = input_shape
    if channels not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {channels}")
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    name = resolve_model_name(name, input_shape)
    if name == "small_cnn":
        model = FeatureClassifier(small_cnn_backbone(channels, height, width), 128, num_classes)
    elif name.startswith("preact_resnet"):
        blocks = (2, 2, 2, 2) if name == "preact_resnet18" else (3, 4, 6, 3)
        model = FeatureClassifier(PreActResNetBackbone(channels, blocks), 512, num_classes)
    else:
        model = FeatureClassifier(*torchvision_resnet_backbone(name, channels), num_classes)
    return model.to(memory_format=torch.channels_last)
