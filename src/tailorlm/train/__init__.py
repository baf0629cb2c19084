"""Offline training of parametric personalization: per-user, per-persona and global adapters.

Submodules register trainers by method name (``jobs.register_trainer``): ``lora``,
``dpo``, ``softprompt``. Nothing is imported here on purpose: training pulls in
peft/trl (~10 s each), and training never runs in the request path.
"""
