"""Convolutional networks: a ResNet-style block with eval-mode BatchNorm compiles and matches."""

import torch
from torch import nn

import kiln

from compare import assert_close


class BasicBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


def _resnet_like():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16),
                          nn.ReLU(), BasicBlock(16), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 10)).eval()
    with torch.no_grad():  # non-trivial statistics, so BatchNorm is not an identity
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_(1, 0.2)
                module.bias.normal_(0, 0.2)
    return model


def test_resnet_block_with_batch_norm_matches_eager():
    model, x = _resnet_like(), torch.randn(2, 3, 32, 32)
    text = kiln.compile_to_vmfb(model, (x,), compile_to="torch")
    assert "torch.operator" not in text  # BatchNorm decomposed, not an op IREE rejects
    out = kiln.load(kiln.compile_to_vmfb(model, (x,)))(x)
    with torch.no_grad():
        assert_close(out, model(x))


def test_pointwise_convolutions_as_matmuls_match_eager():
    """target cuda rewrites 1x1 convolutions as matmuls (kiln-pointwise-conv-to-matmul, an IREE
    CUDA f16 workaround); a cpu+cuda artifact carries the rewrite, so its CPU variant checks
    the numbers here: strided, with bias, and beside a 3x3 convolution that stays a conv."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, 12, 1, stride=2),
                                torch.nn.Conv2d(12, 4, 1, bias=False)).eval()
    x = torch.randn(2, 8, 9, 7)
    compiled = kiln.compile_model(model, (x,), target=("cpu", "cuda"), cache=False)
    rewrites = [r for r in compiled.report.rewrites
                if r.pass_name == "kiln-pointwise-conv-to-matmul"]
    assert len(rewrites) == 2
    out = kiln.load(compiled.vmfb, device="cpu")(x)
    torch.testing.assert_close(out, model(x).detach(), rtol=1e-4, atol=1e-4)
