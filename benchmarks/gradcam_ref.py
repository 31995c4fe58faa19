"""The reference for benchmarks/cam.py and gradients.py: pytorch-grad-cam on torchvision's ResNet-18, as a user runs it.

    python gradcam_ref.py WEIGHTS.pth IMAGE METHOD OUT.png

Loads the state dict, preprocesses the photo with torchvision (resize 256, centre crop 224, ImageNet
mean/std), computes the map of the predicted class at ``layer4[-1]`` and writes it over the photo.
"""

import sys

import cv2
import numpy as np
import torch
import torchvision
from PIL import Image
from pytorch_grad_cam import AblationCAM, GradCAM, ScoreCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from torchvision import transforms

weights, image, method, out = sys.argv[1:5]
model = torchvision.models.resnet18()
model.load_state_dict(torch.load(weights, map_location="cpu"))
model.eval()
shape = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
photo = shape(Image.open(image).convert("RGB"))
normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
x = normalize(photo)[None]
cam = {"score": ScoreCAM, "ablation": AblationCAM, "grad": GradCAM}[method](model, [model.layer4[-1]])
grayscale = cam(x, None)[0]
picture = show_cam_on_image(np.float32(photo) / 255, grayscale, use_rgb=True)
cv2.imwrite(out, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
