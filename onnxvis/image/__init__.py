"""Images: loading photos, preprocessing them like torchvision, and the model's image input with the preprocessing settled for it."""
