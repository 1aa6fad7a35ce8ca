"""The tracer reproduces the receptive fields published for classic torchvision networks.

The field of a classifier's logits is the whole image, so the published number is that of the last
feature map: ResNet-18's ``layer4``, VGG-16's and AlexNet's ``features`` (pool5), which is also the
largest finite field in the layer table, the one the model card reports. The networks are built on the
meta device with ``weights=None``: the analysis needs shapes only, so nothing is downloaded, no VGG-16
weights (half a gigabyte) are allocated and no convolution is computed.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.hub
import torchvision.models as tvm

from experiments.analysis.receptive_field import analyze_receptive_field


@pytest.mark.parametrize(
    ("name", "feature_map", "field", "pool_fields"),
    [
        ("resnet18", "layer4", 435, [11]),
        ("vgg16", "features", 212, [6, 16, 44, 100, 212]),  # pool1..pool5
        ("alexnet", "features", 195, [19, 67, 195]),  # pool1, pool2, pool5
    ],
)
def test_published_receptive_fields(
    monkeypatch: pytest.MonkeyPatch, name: str, feature_map: str, field: int, pool_fields: list[int]
) -> None:
    def no_download(*args, **kwargs):
        raise AssertionError(f"{name} tried to download {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    with torch.device("meta"):
        network = getattr(tvm, name)(weights=None)
    analysis = analyze_receptive_field(network, (1, 3, 224, 224))
    assert analysis.module_calls[feature_map].rf == field
    assert max(r.rf for r in analysis.rows if not r.is_global) == field
    assert [r.rf for r in analysis.rows if r.kind == "pool"] == pool_fields
    assert math.isinf(analysis.rf) and analysis.output.output_shape == (1, 1000)
