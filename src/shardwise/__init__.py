"""shardwise: 2D-parallel (FSDP2 x tensor/sequence/loss parallel) training of Hugging Face causal LMs."""

__version__ = "0.1.0"
