"""pickloop: self-predict and manual-select rounds for LoRA domain fine-tuning."""

__version__ = "0.1.0"
