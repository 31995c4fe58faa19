"""Pictures as arrays: make_grid with torchvision's semantics, colour maps, the layouts of layers. Knows no files."""
