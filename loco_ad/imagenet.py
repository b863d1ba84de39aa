"""ImageNet's per-channel RGB mean and standard deviation (pixels in [0, 1]): the input normalisation of the ImageNet-trained backbones."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
