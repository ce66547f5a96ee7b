"""The SGLang adapter: the only package that imports sglang (so an SGLang upgrade touches only this)."""
