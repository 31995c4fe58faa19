"""The tutorial's kernel script, rewritten with its paths as arguments (reference for benchmarks/run.py).

What the PyTorch tutorial does to look at AlexNet's kernels: build the torchvision model, load the
whole state dict from a local ``.pth`` file, then for each of the first two ``nn.Conv2d`` layers
write into TensorBoard

* for every output channel, the grid of that kernel's input-channel slices as grey images
  (``w[o].unsqueeze(1)``), each slice normalised on its own;
* one grid of all the kernels: RGB tiles for a layer with 3 input channels (conv1), otherwise one
  grey tile per input-channel slice.

Every grid is ``torchvision.utils.make_grid(..., normalize=True, scale_each=True, nrow=8)``.
This is what ``onnxvis kernels MODEL --layers 0,1 --split`` draws from the ONNX file.

    python benchmarks/tutorial_kernels.py --model alexnet --weights alexnet.pth --logdir runs/kernels
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="alexnet", help="torchvision model name (default alexnet)")
    parser.add_argument("--weights", required=True, help="state-dict .pth file")
    parser.add_argument("--logdir", required=True, help="TensorBoard log folder")
    parser.add_argument("--layers", type=int, default=2, help="how many conv layers, from the first (default 2)")
    args = parser.parse_args()

    import torch
    import torch.nn as nn
    import torchvision.models as models
    import torchvision.utils as vutils
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=args.logdir, filename_suffix="_kernel")
    model = getattr(models, args.model)()
    model.load_state_dict(torch.load(args.weights))

    drawn = 0
    for module in model.modules():
        if not isinstance(module, nn.Conv2d):
            continue
        if drawn >= args.layers:
            break
        kernels = module.weight
        c_out, c_in, k_h, k_w = tuple(kernels.shape)
        for o in range(c_out):
            slices = kernels[o].unsqueeze(1)  # (c_in, 1, k_h, k_w): one grey tile per input channel
            grid = vutils.make_grid(slices, normalize=True, scale_each=True, nrow=8)
            writer.add_image(f"{drawn}_conv_split_in_channel", grid, global_step=o)
        if c_in == 3:
            everything = kernels  # RGB tiles
        else:
            everything = kernels.reshape(-1, 1, k_h, k_w)  # one grey tile per slice
        grid = vutils.make_grid(everything, normalize=True, scale_each=True, nrow=8)
        writer.add_image(f"{drawn}_all", grid, global_step=0)
        print(f"{drawn}_convlayer shape: {tuple(kernels.shape)}")
        drawn += 1
    writer.close()


if __name__ == "__main__":
    main()
