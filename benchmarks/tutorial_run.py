"""The PyTorch tutorial's AlexNet visualisation, as written, with its paths as arguments.

Unlike ``tutorial_kernels.py`` and ``tutorial_fmaps.py`` (our rewrite, which draws what ``onnxvis
kernels --split`` and ``onnxvis fmaps`` draw), this is the tutorial's own code: the tags
``n_Convlayer_split_in_channel`` (one step per output channel, ``nrow=c_int``) and ``n_all`` (step
620, ``kernels.view(-1, 3, k_h, k_w)``) for the first two ``nn.Conv2d`` layers, then ``feature map in
conv1`` (step 620). It is the reference of ``onnxvis tutorial`` (tests/test_tutorial_parity.py
compares the two runs) and of its benchmark.

Changes from the tutorial: the paths are arguments; the first writer is closed before the second
opens (the tutorial leaves it to the end of the process; no event changes); ``--skip-kernels``
runs the feature-map part alone.

    python benchmarks/tutorial_run.py --weights alexnet.pth --image cat.jpg --logdir results
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="AlexNet state-dict .pth file (path_state_dict)")
    parser.add_argument("--image", required=True, help="the photo (path_img)")
    parser.add_argument("--logdir", required=True, help="TensorBoard log folder (log_dir)")
    parser.add_argument("--skip-kernels", action="store_true", help="run the feature-map part alone")
    args = parser.parse_args()
    path_state_dict, path_img, log_dir = args.weights, args.image, args.logdir

    import torch
    import torch.nn as nn
    import torchvision.models as models
    import torchvision.transforms as transforms
    import torchvision.utils as vutils
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    # ----------------------------------- kernel visualization -----------------------------------
    writer = SummaryWriter(log_dir=log_dir, filename_suffix="_kernel")

    alexnet = models.alexnet()
    pretrained_state_dict = torch.load(path_state_dict)
    alexnet.load_state_dict(pretrained_state_dict)

    kernel_num = -1
    vis_max = -1 if args.skip_kernels else 1
    for sub_module in alexnet.modules():
        if not isinstance(sub_module, nn.Conv2d):
            continue
        kernel_num += 1
        if kernel_num > vis_max:
            break

        kernels = sub_module.weight
        c_out, c_int, k_h, k_w = tuple(kernels.shape)

        for o_idx in range(c_out):
            kernel_idx = kernels[o_idx, :, :, :].unsqueeze(1)  # (c_int, 1, k_h, k_w)
            kernel_grid = vutils.make_grid(kernel_idx, normalize=True, scale_each=True, nrow=c_int)
            writer.add_image(f"{kernel_num}_Convlayer_split_in_channel", kernel_grid, global_step=o_idx)

        kernel_all = kernels.view(-1, 3, k_h, k_w)  # 3, h, w
        kernel_grid = vutils.make_grid(kernel_all, normalize=True, scale_each=True, nrow=8)  # c, h, w
        writer.add_image(f"{kernel_num}_all", kernel_grid, global_step=620)

        print(f"{kernel_num}_convlayer shape:{tuple(kernels.shape)}")
    writer.close()

    # ----------------------------------- feature map visualization -----------------------------------
    writer = SummaryWriter(log_dir=log_dir, filename_suffix="_feature map")

    normMean = [0.49139968, 0.48215827, 0.44653124]
    normStd = [0.24703233, 0.24348505, 0.26158768]
    norm_transform = transforms.Normalize(normMean, normStd)
    img_transforms = transforms.Compose([
        transforms.Resize((224, 224)),
        transforms.ToTensor(),
        norm_transform,
    ])

    img_pil = Image.open(path_img).convert("RGB")
    img_tensor = img_transforms(img_pil)
    img_tensor.unsqueeze_(0)  # chw --> bchw

    convlayer1 = alexnet.features[0]
    fmap_1 = convlayer1(img_tensor)

    fmap_1.transpose_(0, 1)  # bchw=(1, 64, 55, 55) --> (64, 1, 55, 55)
    fmap_1_grid = vutils.make_grid(fmap_1, normalize=True, scale_each=True, nrow=8)

    writer.add_image("feature map in conv1", fmap_1_grid, global_step=620)
    writer.close()


if __name__ == "__main__":
    main()
