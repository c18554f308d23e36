"""Models (MNIST, ECG5000, CIFAR-10, dSprites) and the registry that builds them by key."""
