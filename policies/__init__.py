"""Preset policies (TOML), installed as ``hyclora_hooks.policies``; load with ``hyclora_hooks.load_policy(name)``."""
