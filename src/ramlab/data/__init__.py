"""Data: verified MNIST digits and the scenes built from them."""
