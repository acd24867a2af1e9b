"""What the image studies share (Re-Basin, repair): `data` (Fashion-MNIST and CIFAR-10 as uint8
arrays, subsets, the float batches a model reads) and `training` (the classifier training and
evaluation loops, and BatchNorm statistics recomputed after weights change)."""
