"""ramlab: the Recurrent Attention Model against low-parameter CNNs on MNIST scenes."""

__version__ = "0.1.0"
