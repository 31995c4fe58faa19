"""The tutorial's two scripts, as written in its text (../shared/seed/tutorial.txt), with their paths as arguments.

This is the tutorial's own code, not our rewrite (``tutorial_kernels.py`` and ``tutorial_fmaps.py``
draw what ``onnxvis kernels --split`` and ``onnxvis fmaps`` draw): for the first two ``nn.Conv2d``
layers the tags ``n_Convlayer_split_in_channel`` (one step per output channel, ``nrow=8``) and
``n_all`` (step 620, ``kernels.view(-1, 3, k_h, k_w)``), then ``feature map in conv1`` (step 620).
It is the reference of ``onnxvis tutorial``: tests/test_tutorial_parity.py runs it and compares the
two runs, and tests/test_tutorial_text.py checks that the two functions below are the text's code.

The only changes from the text:

- the paths: the file names in the lines of ``log_dir``, ``path_state_dict`` and ``path_img``
  (``"results"``, ``"alexnet-owt-4df8aa71.pth"``, ``"tiger cat.jpg"``) are the arguments, made
  absolute, so that ``os.path.join`` returns them as they are;
- the second script gets the imports it takes from the first (``os``, ``torch``, ``models``,
  ``SummaryWriter``, ``vutils``) and the two it uses that neither script imports (``transforms``,
  ``PIL.Image``);
- the first script gets the ``writer.close()`` it lacks (the second has its own), so that its
  events are on disk before the second script starts.

Each script runs as the text gives it, in its own function (its own names), one after the other in
one process; ``--skip-kernels`` runs the second alone.

    python benchmarks/tutorial_run.py --weights alexnet.pth --image cat.jpg --logdir results
"""

# The tutorial's code as written: its str.format calls and its import order.
# ruff: noqa: UP032, I001

from __future__ import annotations

import argparse
import os


def kernel_script(state_dict_file: str, results_dir: str) -> None:
    """The text's first script: the kernels of the first two conv layers."""
    import os
    import torch
    import torch.nn as nn
    from torch.utils.tensorboard import SummaryWriter
    import torchvision.utils as vutils
    import torchvision.models as models

    BASE_DIR = os.path.dirname(os.path.abspath(__file__))
    log_dir = os.path.join(BASE_DIR, results_dir)
    writer = SummaryWriter(log_dir=log_dir, filename_suffix="_kernel")

    path_state_dict = os.path.join("data", state_dict_file)
    alexnet = models.alexnet()
    alexnet.load_state_dict(torch.load(path_state_dict))

    kernel_num = -1
    vis_max = 1

    # 取前两层卷积核
    for sub_module in alexnet.modules():
        if not isinstance(sub_module, nn.Conv2d):
            continue
        if kernel_num >= vis_max:
            break
        kernel_num += 1
        kernels = sub_module.weight
        c_out, c_int, k_h, k_w = tuple(kernels.shape)  # 输出通道数,输入通道数,卷积核宽,卷积核高
        print(kernels.shape)
        for o_idx in range(c_out):
            kernel_idx = kernels[o_idx, :, :, :].unsqueeze(1)  # 获得(3, h, w), 但是make_grid需要 BCHW,这里拓展C维度变为(3, 1, h, w)
            kernel_grid = vutils.make_grid(kernel_idx, normalize=True, scale_each=True, nrow=8)  # 将卷积核于网格中可视化
            # nrow:每一行显示的图像数
            writer.add_image('{}_Convlayer_split_in_channel'.format(kernel_num), kernel_grid, global_step=o_idx)
        #     名称,图片,第几张图片
        kernel_all = kernels.view(-1, 3, k_h, k_w)  # 3, h, w
        kernel_grid = vutils.make_grid(kernel_all, normalize=True, scale_each=True, nrow=8)  # c, h, w
        writer.add_image('{}_all'.format(kernel_num), kernel_grid, global_step=620)
        print("{}_convlayer shape:{}".format(kernel_num, tuple(kernels.shape)))
    writer.close()


def feature_map_script(state_dict_file: str, image_file: str, results_dir: str) -> None:
    """The text's second script: the first conv layer's feature maps of one photo."""
    import os
    import torch
    from torch.utils.tensorboard import SummaryWriter
    import torchvision.utils as vutils
    import torchvision.models as models
    import torchvision.transforms as transforms
    from PIL import Image
    BASE_DIR = os.path.dirname(os.path.abspath(__file__))
    log_dir = os.path.join(BASE_DIR, results_dir)

    path_state_dict = os.path.join("data", state_dict_file)
    alexnet = models.alexnet()
    alexnet.load_state_dict(torch.load(path_state_dict))
    writer = SummaryWriter(log_dir=log_dir, filename_suffix="_feature map")

    # 数据
    path_img = os.path.join(BASE_DIR,"data", image_file)  # your path to image
    img_transforms = transforms.Compose([
        transforms.Resize((224, 224)),
        transforms.ToTensor(),
        transforms.Normalize([0.49139968, 0.48215827, 0.44653124], [0.24703233, 0.24348505, 0.26158768])
    ])

    img_pil = Image.open(path_img).convert('RGB')
    img_tensor = img_transforms(img_pil)
    img_tensor.unsqueeze_(0)  # chw -> bchw


    convlayer1 = alexnet.features[0]  # 第一层卷积层
    fmap_1 = convlayer1(img_tensor)

    fmap_1.transpose_(0, 1)  # bchw=(1, 64, 55, 55) --> (64, 1, 55, 55)
    fmap_1_grid = vutils.make_grid(fmap_1, normalize=True, scale_each=True, nrow=8)

    writer.add_image('feature map in conv1', fmap_1_grid, global_step=620)
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="AlexNet state-dict .pth file (path_state_dict)")
    parser.add_argument("--image", required=True, help="the photo (path_img)")
    parser.add_argument("--logdir", required=True, help="TensorBoard log folder (log_dir)")
    parser.add_argument("--skip-kernels", action="store_true", help="run the feature-map script alone")
    args = parser.parse_args()
    # absolute: the scripts join them to their own folders, and os.path.join keeps an absolute path as it is
    weights, image, logdir = (os.path.abspath(p) for p in (args.weights, args.image, args.logdir))
    if not args.skip_kernels:
        kernel_script(weights, logdir)
    feature_map_script(weights, image, logdir)


if __name__ == "__main__":
    main()
