"""Building blocks shared by methods that tune the encoders (LoRA, fine-tuning loops, augmentations)."""
