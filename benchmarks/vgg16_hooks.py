"""Feature maps of every conv layer with PyTorch forward hooks: the usual way, as a reference.

Builds the torchvision model (VGG16 by default), loads its whole state dict from a local ``.pth``
file, registers a forward hook on every ``nn.Conv2d`` that keeps the layer's output (before its
ReLU), runs one photo through the model, and writes one grid per layer into TensorBoard with
``make_grid(maps.unsqueeze(1), normalize=True, scale_each=True, nrow=8)``.

The photo is prepared as onnxvis prepares it for a torchvision export (the preprocessing that
``onnxvis export`` records in the model): ``Resize(256)``, ``CenterCrop(224)``, ``ToTensor()``,
``Normalize`` with ImageNet's mean and std.

This is what ``onnxvis fmaps MODEL IMAGE --layers all`` draws.

    python benchmarks/vgg16_hooks.py --model vgg16 --weights vgg16.pth --image cat.png --logdir runs/hooks
"""

from __future__ import annotations

import argparse

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16", help="torchvision model name (default vgg16)")
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

    writer = SummaryWriter(log_dir=args.logdir, filename_suffix="_hooks")
    model = getattr(models, args.model)()
    model.load_state_dict(torch.load(args.weights))
    model.eval()

    maps: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module, inputs, output):
            maps[name] = output.detach()

        return hook

    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    for name, conv in convs:
        conv.register_forward_hook(keep(name))

    prepare = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    )
    batch = prepare(Image.open(args.image).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        model(batch)

    for index, (name, _) in enumerate(convs):
        grid = vutils.make_grid(maps[name][0].unsqueeze(1), normalize=True, scale_each=True, nrow=8)
        writer.add_image(f"fmaps/{index:02d}_{name}", grid, global_step=0)
    writer.close()
    print(f"{len(convs)} conv layers: {', '.join(f'{n} {tuple(maps[n].shape[1:])}' for n, _ in convs)}")


if __name__ == "__main__":
    main()
