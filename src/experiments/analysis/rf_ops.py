"""Which operations the receptive-field analysis knows, by module class and by function/method name.

Internal to :mod:`experiments.analysis.receptive_field`. Adding an operation is usually one entry here:
pointwise modules and names keep the receptive field, global modules mix every position, and the
name sets route functions and tensor methods to the rule that models them (:mod:`.rf_propagate`).
Unknown operations are assumed pointwise only when the recorded shapes show that they keep the
spatial size.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .rf_state import hw

#: kinds of :class:`~experiments.analysis.receptive_field.LayerRF` that are rows of the layer table
ROW_KINDS = frozenset(
    {
        "conv",
        "conv_transpose",
        "pool",
        "adaptive_pool",
        "global_pool",
        "upsample",
        "unpool",
        "pixel_shuffle",
        "pixel_unshuffle",
        "flatten",
        "linear",
        "attention",
    }
)

POINTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Threshold,
    nn.LogSigmoid,
    nn.Hardshrink,
    nn.Softshrink,
    nn.Softmax2d,
    nn.ChannelShuffle,
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.CrossMapLRN2d,
    nn.modules.dropout._DropoutNd,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)

PAD_MODULES: tuple[type[nn.Module], ...] = tuple(
    getattr(nn.modules.padding, name)
    for name in ("_ConstantPadNd", "_ReflectionPadNd", "_ReplicationPadNd", "_CircularPadNd")
    if hasattr(nn.modules.padding, name)
)

GLOBAL_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
    nn.TransformerEncoder,
    nn.TransformerDecoder,
    nn.Transformer,
)

UNSUPPORTED_3D: tuple[type[nn.Module], ...] = (
    nn.Conv3d,
    nn.ConvTranspose3d,
    nn.MaxPool3d,
    nn.AvgPool3d,
    nn.LPPool3d if hasattr(nn, "LPPool3d") else nn.MaxPool3d,
    nn.MaxUnpool3d,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


POINTWISE_NAMES = _words(
    """
    add sub subtract rsub mul multiply div divide true_divide truediv floordiv floor_divide mod remainder
    fmod pow neg negative pos abs absolute and_ or_ xor invert iadd isub imul itruediv ifloordiv
    eq ne lt le gt ge logical_and logical_or logical_not logical_xor bitwise_and bitwise_or
    relu relu_ relu6 elu elu_ selu celu gelu silu mish leaky_relu leaky_relu_ prelu rrelu hardtanh
    hardtanh_ hardswish hardsigmoid sigmoid sigmoid_ tanh tanh_ softplus softsign tanhshrink
    threshold threshold_ logsigmoid hardshrink softshrink
    dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout
    batch_norm instance_norm group_norm layer_norm local_response_norm rms_norm
    clamp clamp_ clip clamp_min clamp_max where maximum minimum fmax fmin exp exp_ log log_ log1p
    expm1 sqrt rsqrt square sign erf lerp addcmul addcdiv sin cos reciprocal floor ceil round trunc
    frac nan_to_num masked_fill masked_fill_ add_ sub_ mul_ div_ pow_ abs_ neg_ zero_ fill_
    contiguous clone detach detach_ float double half bfloat16 to type type_as cpu cuda
    requires_grad_ channel_shuffle native_channel_shuffle zeros_like ones_like empty_like full_like
    rand_like randn_like sigmoid_ bernoulli bernoulli_ copy_
    """
)

META_METHODS = _words(
    "size dim numel ndimension nelement stride data_ptr element_size get_device is_contiguous "
    "is_floating_point"
)
META_ATTRS = _words("shape ndim dtype device is_cuda requires_grad layout is_sparse")

REDUCTIONS = _words(
    "mean sum amax amin max min std var norm logsumexp prod median nansum nanmean argmax argmin "
    "all any count_nonzero std_mean var_mean"
)
DIM_GLOBAL = _words("softmax log_softmax softmin cumsum cumprod cummax cummin normalize")
VIEWS = _words(
    "view reshape view_as reshape_as squeeze unsqueeze expand expand_as repeat unflatten squeeze_ unsqueeze_"
)
PERMUTES = _words("permute transpose swapaxes swapdims movedim moveaxis")

POOL_FUNCTIONS = _words(
    "max_pool1d max_pool2d max_pool1d_with_indices max_pool2d_with_indices avg_pool1d avg_pool2d "
    "lp_pool1d lp_pool2d"
)
INTERP_TAPS = {"nearest": 0, "nearest-exact": 0, "linear": 1, "bilinear": 1, "trilinear": 1, "bicubic": 3}


def pool_params(m: nn.Module) -> tuple[Any, Any, Any, Any]:
    k = m.kernel_size  # type: ignore[attr-defined]
    s = getattr(m, "stride", None) or k
    p = getattr(m, "padding", 0)
    d = getattr(m, "dilation", 1)
    return k, s, p, d


def conv_padding(padding: Any, k: tuple[Any, Any], d: tuple[Any, Any], nd: int) -> tuple[Any, Any]:
    if padding == "valid":
        return (0, 0)
    if padding == "same":  # PyTorch puts the odd extra pixel on the right/bottom
        return tuple((int(d[i]) * (int(k[i]) - 1)) // 2 for i in range(2))  # type: ignore[return-value]
    return hw(padding, nd, 0)
