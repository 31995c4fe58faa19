"""The tutorial's feature-map script, rewritten with its paths as arguments (reference for benchmarks/run.py).

What the PyTorch tutorial does to look at AlexNet's conv1 feature maps: build the torchvision
model, load the whole state dict from a local ``.pth`` file, prepare one photo with
``Resize((224, 224))``, ``ToTensor`` and ``Normalize`` (the tutorial's CIFAR-10 mean and std), run
the first ``nn.Conv2d`` on it (its output before ReLU: 64 maps of 55x55 for AlexNet), and write
``make_grid(maps, normalize=True, scale_each=True, nrow=8)`` into TensorBoard.

This is what ``onnxvis fmaps MODEL IMAGE --resize 224,224 --mean ... --std ...`` draws.

    python benchmarks/tutorial_fmaps.py --model alexnet --weights alexnet.pth --image cat.png --logdir runs/fmaps
"""

from __future__ import annotations

import argparse

MEAN = [0.49139968, 0.48215827, 0.44653124]
STD = [0.24703233, 0.24348505, 0.26158768]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="alexnet", help="torchvision model name (default alexnet)")
    parser.add_argument("--weights", required=True, help="state-dict .pth file")
    parser.add_argument("--image", required=True, help="the photo")
    parser.add_argument("--logdir", required=True, help="TensorBoard log folder")
    args = parser.parse_args()

    import torch
    import torch.nn as nn
    import torchvision.models as models
    import torchvision.transforms as transforms
    import torchvision.utils as vutils
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=args.logdir, filename_suffix="_feature_map")
    model = getattr(models, args.model)()
    model.load_state_dict(torch.load(args.weights))

    prepare = transforms.Compose(
        [transforms.Resize((224, 224)), transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    )
    image = Image.open(args.image).convert("RGB")
    batch = prepare(image).unsqueeze(0)  # (1, 3, 224, 224)

    conv1 = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    maps = conv1(batch)  # (1, 64, 55, 55) for AlexNet, before ReLU
    maps.transpose_(0, 1)  # (64, 1, 55, 55): one grey tile per map
    grid = vutils.make_grid(maps, normalize=True, scale_each=True, nrow=8)
    writer.add_image("feature map in conv1", grid, global_step=0)
    writer.close()
    print(f"conv1 feature maps: {tuple(maps.shape)}")


if __name__ == "__main__":
    main()
