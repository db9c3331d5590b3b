"""Compute kernels of hyclora_hooks, installed as ``hyclora_hooks.kernels``.

One file per operation: the plain-PyTorch reference (the oracle, and the CPU path) and, where one exists,
its Triton kernel beside it. Never import this folder as a top-level ``kernels`` module: Hugging Face ships a
package of that name, which transformers imports.
"""
