"""The reference for benchmarks/gradients.py: Captum's integrated gradients on torchvision's ResNet-18, as a user runs it.

    python captum_ref.py WEIGHTS.pth IMAGE OUT.npy [STEPS]

Loads the state dict, preprocesses the photo with torchvision (resize 256, centre crop 224, ImageNet
mean/std), attributes the predicted class with IntegratedGradients (Gauss-Legendre, zero baseline,
all steps in one batch: Captum's defaults) and saves the attribution.
"""

import sys

import numpy as np
import torch
import torchvision
from captum.attr import IntegratedGradients
from PIL import Image
from torchvision import transforms

weights, image, out = sys.argv[1:4]
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 50
model = torchvision.models.resnet18()
model.load_state_dict(torch.load(weights, map_location="cpu"))
model.eval()
shape = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
x = normalize(shape(Image.open(image).convert("RGB")))[None]
with torch.no_grad():
    target = int(model(x)[0].argmax())
attribution = IntegratedGradients(model).attribute(x, target=target, n_steps=steps)
np.save(out, attribution.detach().numpy()[0])
